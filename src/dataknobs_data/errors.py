"""The package's error hierarchy.

Every error raised on purpose by dataknobs-data derives from :class:`DataknobsDataError`, so a
caller can catch "anything this library refused" in one clause, and the specific subclasses let
them react to one problem (a duplicate id, a wrong dimension) without parsing messages.
Validation errors also derive from :class:`ValueError` because that is what they are; driver
errors are wrapped in :class:`BackendError` with ``raise ... from`` so the original stays visible.
"""

from __future__ import annotations


class DataknobsDataError(Exception):
    """Base class of every error this package raises deliberately."""


class ValidationError(DataknobsDataError, ValueError):
    """Input was refused before anything was written."""


class FieldValidationError(ValidationError):
    """A field's value does not fit its declared type (the message names the field)."""

    def __init__(self, field: str | None, problem: str) -> None:
        self.field = field
        self.problem = problem
        where = f"field {field!r}: " if field is not None else ""
        super().__init__(f"{where}{problem}")


class InvalidIdentifierError(ValidationError):
    """A record id, field name or collection name is unsafe or malformed."""


class QueryError(ValidationError):
    """A query or filter is malformed (bad shape, bad value, bad sort, bad paging)."""


class UnknownOperatorError(QueryError):
    """A filter used an operator name that does not exist."""


class InvalidTextError(FieldValidationError, InvalidIdentifierError, QueryError):
    """A string is not valid Unicode (a lone surrogate): no engine can store it as UTF-8.

    One error for every place a string enters (ids, field names, values, JSON, metadata,
    filters, text queries); it is also an :class:`InvalidIdentifierError` and a
    :class:`QueryError`, so code catching the error of its context keeps working.
    ``field`` names the field the string belongs to (``None`` for an id or a name itself).
    """


class UnknownFieldError(ValidationError):
    """An operation named a field the store does not know (e.g. an undeclared vector field)."""

    def __init__(self, field: str, problem: str = "unknown field") -> None:
        self.field = field
        super().__init__(f"field {field!r}: {problem}")


class DuplicateRecordError(DataknobsDataError):
    """A create or batch create used an id that already exists (or appears twice)."""

    def __init__(
        self, record_id: str, problem: str = "a record with this id already exists"
    ) -> None:
        self.record_id = record_id
        super().__init__(f"record {record_id!r}: {problem}")


class SchemaError(DataknobsDataError):
    """Stored data and the schema the caller asked for disagree."""


class UnsupportedError(DataknobsDataError):
    """The backend cannot run this exactly; it refuses rather than return something else."""


class UnsupportedOperatorError(UnsupportedError):
    """The backend cannot evaluate a filter operator exactly."""


class FilterTooLargeError(UnsupportedError):
    """A filter exceeds a limit of the engine that no rewrite avoids (the message names the
    largest condition's field, its size and the limit; see docs/large-filters.md)."""


class UnsupportedMetricError(UnsupportedError):
    """The backend (or field index) cannot score with this distance metric exactly."""


class BackendError(DataknobsDataError):
    """The underlying engine failed; the driver's exception is chained as ``__cause__``."""


class BackendUnavailableError(DataknobsDataError):
    """A backend was requested whose optional dependencies are not installed."""


class DatabaseClosedError(DataknobsDataError):
    """The database was used after ``close()``."""


class BackendConnectionError(BackendError):
    """The engine could not be reached or refused the connection (the message never holds
    the password or the raw URL; the driver's error is chained, scrubbed of both)."""


class AuthenticationError(BackendConnectionError):
    """The server refused the credentials, or needed a password and none was found."""


class CertificateError(BackendConnectionError):
    """TLS verification failed: the server's certificate does not chain to the root certificate
    given (``sslrootcert``), does not name the host, or the root certificate is missing."""


class PermissionDeniedError(BackendError):
    """The connected role lacks a privilege the operation needs; :attr:`privilege` names it
    (e.g. ``"CREATE on schema app"``) and the message says what would grant it."""

    def __init__(self, message: str, *, privilege: str | None = None) -> None:
        self.privilege = privilege
        super().__init__(message)


class StoreLockedError(BackendError):
    """An embedded store (a faiss or chroma directory) is held open by another process, or by
    another open object of this process where that is unsafe; :attr:`path` is its lock file
    and :attr:`holder` what the holder wrote there (pid, host, time, kind), empty if unknown.
    The lock goes with the holder's ``close()`` or its death (even ``kill -9``)."""

    def __init__(
        self, message: str, *, path: str = "", holder: dict[str, object] | None = None
    ) -> None:
        self.path = path
        self.holder = {} if holder is None else holder
        super().__init__(message)

    def __reduce__(self) -> tuple[type[StoreLockedError], tuple[str], dict[str, object]]:
        """Picklable with its path and holder (e.g. raised in a multiprocessing worker)."""
        return (type(self), (str(self),), dict(self.__dict__))


class StoreBusyError(BackendError):
    """A shared store (a SQLite file) stayed locked by another writer longer than the busy
    timeout; nothing of this call was written, and retrying later may succeed."""
