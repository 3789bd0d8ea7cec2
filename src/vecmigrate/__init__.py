"""vecmigrate: move vector databases between engines and prove nothing was lost.

The public Python API (every CLI verb, typed results)::

    import vecmigrate as vm

    report = vm.copy("lancedb:///data/lance", "dump:///backups/docs", "docs")
    assert report.ok, report.to_json()

The names below are resolved on first use (PEP 562), so ``import vecmigrate`` and the
CLI's ``--help`` do not pay for pyarrow, numpy and pydantic.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# pyarrow's allocator (mimalloc) keeps freed pages a while before returning them; a copy
# frees a batch's buffers every few milliseconds, so with the delay its peak RSS holds
# ~100 MiB of freed pages (dump -> LanceDB, 1M x 384: 440 MiB with it 0, 540 without).
# Read once, when pyarrow loads: effective when vecmigrate is imported first (the CLI).
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")

if TYPE_CHECKING:
    from vecmigrate.api import (
        CollectionInfo,
        CopyReport,
        PlanReport,
        VerifyReport,
        check,
        copy,
        diff,
        export,
        import_,
        inspect,
        plan,
        run,
        sync,
        verify,
    )
    from vecmigrate.connectors import Connector, StorageIdentity, connect, storage_identity
    from vecmigrate.errors import (
        ConfigError,
        ConnectorError,
        DataError,
        ReplaceNotConfirmed,
        SchemaMismatchError,
        TerminalError,
        TransientError,
        VecmigrateError,
    )
    from vecmigrate.mapping import MappingSpec
    from vecmigrate.model import Capabilities, CollectionSchema, MetadataField, Metric, VectorField
    from vecmigrate.pipeline import CopyOptions, CopyResult, RetryPolicy
    from vecmigrate.pipeline.migration import CollectionRun, MigrationFile, RunReport
    from vecmigrate.pipeline.sync import SyncOptions, SyncResult
    from vecmigrate.verify.check import CheckReport
    from vecmigrate.verify.copycheck import Check
    from vecmigrate.verify.diff import DiffResult
    from vecmigrate.verify.gates import VerifyConfig

__all__ = [
    "Capabilities",
    "Check",
    "CheckReport",
    "CollectionInfo",
    "CollectionRun",
    "CollectionSchema",
    "ConfigError",
    "Connector",
    "ConnectorError",
    "CopyOptions",
    "CopyReport",
    "CopyResult",
    "DataError",
    "DiffResult",
    "MappingSpec",
    "MetadataField",
    "Metric",
    "MigrationFile",
    "PlanReport",
    "ReplaceNotConfirmed",
    "RetryPolicy",
    "RunReport",
    "SchemaMismatchError",
    "StorageIdentity",
    "SyncOptions",
    "SyncResult",
    "TerminalError",
    "TransientError",
    "VecmigrateError",
    "VectorField",
    "VerifyConfig",
    "VerifyReport",
    "__version__",
    "check",
    "connect",
    "copy",
    "diff",
    "export",
    "import_",
    "inspect",
    "plan",
    "run",
    "storage_identity",
    "sync",
    "verify",
]

# Where each public name lives; the TYPE_CHECKING imports above must say the same.
_WHERE: dict[str, tuple[str, ...]] = {
    "vecmigrate.api": (
        "CollectionInfo",
        "CopyReport",
        "PlanReport",
        "VerifyReport",
        "check",
        "copy",
        "diff",
        "export",
        "import_",
        "inspect",
        "plan",
        "run",
        "sync",
        "verify",
    ),
    "vecmigrate.connectors": ("Connector", "StorageIdentity", "connect", "storage_identity"),
    "vecmigrate.errors": (
        "ConfigError",
        "ConnectorError",
        "DataError",
        "ReplaceNotConfirmed",
        "SchemaMismatchError",
        "TerminalError",
        "TransientError",
        "VecmigrateError",
    ),
    "vecmigrate.mapping": ("MappingSpec",),
    "vecmigrate.model": (
        "Capabilities",
        "CollectionSchema",
        "MetadataField",
        "Metric",
        "VectorField",
    ),
    "vecmigrate.pipeline": ("CopyOptions", "CopyResult", "RetryPolicy"),
    "vecmigrate.pipeline.migration": ("CollectionRun", "MigrationFile", "RunReport"),
    "vecmigrate.pipeline.sync": ("SyncOptions", "SyncResult"),
    "vecmigrate.verify.check": ("CheckReport",),
    "vecmigrate.verify.copycheck": ("Check",),
    "vecmigrate.verify.diff": ("DiffResult",),
    "vecmigrate.verify.gates": ("VerifyConfig",),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}


if not TYPE_CHECKING:  # hidden from mypy, which would type every unknown name as Any

    def __getattr__(name: str) -> Any:
        """Import the module that defines public ``name`` on first use and keep the value."""
        module = _MODULE_OF.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    """The module's names, the lazy public ones included."""
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """This package's module type: ``vecmigrate.verify`` stays the function.

    Importing a submodule binds it on its parent, so the first import of
    ``vecmigrate.verify.*`` would hide the public ``verify`` function behind the
    subpackage (eager imports used to re-bind the function afterwards). The subpackage
    stays reachable through ``sys.modules`` and ``from vecmigrate.verify import ...``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _MODULE_OF and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
