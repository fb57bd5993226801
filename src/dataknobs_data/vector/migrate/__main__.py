"""``python -m dataknobs_data.vector.migrate``: see :mod:`dataknobs_data.vector.migrate.cli`."""

from .cli import main

if __name__ == "__main__":  # importing the module (e.g. by the API docs' inspection) runs nothing
    raise SystemExit(main())
