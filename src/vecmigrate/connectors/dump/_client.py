"""Errors of the dump connector (file system errors read as in ``connectors/files.py``)."""

from __future__ import annotations

import pyarrow as pa

from vecmigrate.connectors.files import os_error
from vecmigrate.errors import DataError, VecmigrateError


def translate_error(exc: Exception, what: str) -> VecmigrateError | None:
    """The dump's errors: file system errors by ``os_error``; Arrow refusing a batch it
    cannot write is a DataError. The format layer (``vecmigrate.dump``) names parts itself."""
    if isinstance(exc, OSError):  # pyarrow's ArrowIOError is an OSError
        return os_error(exc, what)
    if isinstance(exc, pa.ArrowInvalid | pa.ArrowTypeError | pa.ArrowNotImplementedError):
        return DataError(f"{what}: {exc}")
    return None
