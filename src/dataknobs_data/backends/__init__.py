"""Storage engines. Each backend is one small module or package implementing
:class:`dataknobs_data.database.Backend`; optional engines import their drivers lazily."""
