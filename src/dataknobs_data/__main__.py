"""``python -m dataknobs_data``: the same CLI as the ``dataknobs-data`` console script."""

from .cli import main

raise SystemExit(main())
