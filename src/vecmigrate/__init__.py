"""vecmigrate: move vector databases between engines and prove nothing was lost.

The public Python API (every CLI verb, typed results)::

    import vecmigrate as vm

    report = vm.copy("lancedb:///data/lance", "dump:///backups/docs", "docs")
    assert report.ok, report.to_json()
"""

__version__ = "0.1.0"

# After __version__: modules below read it while this package is being imported.
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
