"""Typed errors. Each carries what a user needs to act: collection, record id, field, hint."""

from __future__ import annotations


class VecmigrateError(Exception):
    """Root of every error vecmigrate raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(VecmigrateError):
    """Bad URI, missing extra, bad option or mapping: fix the invocation and run again."""


class ReplaceNotConfirmed(ConfigError):
    """``--if-exists replace`` would drop records and was not confirmed (``--yes``)."""


class ConnectorError(VecmigrateError):
    """An engine call failed."""


class TransientError(ConnectorError):
    """The engine may succeed if asked again (timeouts, 429, 5xx, connection resets)."""


class TerminalError(ConnectorError):
    """The engine refused for good; retrying the same request will not help."""


class SchemaMismatchError(VecmigrateError):
    """Source and target schemas cannot be reconciled without an explicit mapping."""


class DataError(TerminalError):
    """A record (or part of one) is invalid; names collection, record id and field."""

    def __init__(
        self,
        message: str,
        *,
        collection: str | None = None,
        record_id: object = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = []
        if collection is not None:
            where.append(f"collection={collection!r}")
        if record_id is not None:
            where.append(f"id={record_id!r}")
        if field is not None:
            where.append(f"field={field!r}")
        full = f"{message} [{', '.join(where)}]" if where else message
        super().__init__(full, hint=hint)
        self.collection = collection
        self.record_id = record_id
        self.field = field
        self.reason = message
