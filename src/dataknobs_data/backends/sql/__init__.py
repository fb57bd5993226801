"""One SQL compiler with dialects: the filter and sort compiler, the shared SQL pieces, and the
quoting and naming rules, written once for every SQL engine (see :mod:`.dialect`).

Everything here is pure text: no module imports a database driver, so the compiler and its
exact-SQL tests run with only the development extra installed.
"""

from .dialect import Dialect
from .identifiers import quote_identifier, validate_collection
from .tree import Compiled

__all__ = ["Compiled", "Dialect", "quote_identifier", "validate_collection"]
