"""``python -m dataknobs_data``: the same CLI as the ``dataknobs-data`` console script."""

from .cli import main

if __name__ == "__main__":  # importing the module (e.g. by the API docs' inspection) runs nothing
    raise SystemExit(main())
