"""The public Python API: every verb of the CLI as a function returning a typed result.

Sources and targets are URIs (opened and closed here; read-only where the verb only
reads) or open ``Connector`` objects (left open). Results are immutable and carry
``.ok`` and ``.to_json()``; the CLI prints exactly these.

Modules: ``stores`` (opening stores, checks before any read or write), ``verbs`` (the data
verbs), ``engines``, ``doctor`` (``ls``, ``doctor``), ``jobs`` (migration files, dry runs,
job files).
"""

from __future__ import annotations

from vecmigrate.api.doctor import DoctorCheck, DoctorReport, Listing, doctor, ls
from vecmigrate.api.engines import EngineInfo, EngineParam, engines
from vecmigrate.api.jobs import (
    DEFAULT_STATE_DIR,
    DryRunReport,
    JobInfo,
    dry_run,
    job_path,
    jobs,
    remove_job,
    run,
)
from vecmigrate.api.stores import (
    Progress,
    Store,
    check_copy_options,
    check_verify_config,
    dump_uri,
    export_uri,
    opened,
    parse_uri,
    plan_target,
    refuse_writing_into_source,
    require_collection,
)
from vecmigrate.api.verbs import (
    CollectionInfo,
    CopyReport,
    PlanReport,
    VerifyReport,
    check,
    confirmed,
    copy,
    diff,
    export,
    import_,
    inspect,
    plan,
    select_collections,
    selection_of,
    sync,
    verify,
)

__all__ = [
    "DEFAULT_STATE_DIR",
    "CollectionInfo",
    "CopyReport",
    "DoctorCheck",
    "DoctorReport",
    "DryRunReport",
    "EngineInfo",
    "EngineParam",
    "JobInfo",
    "Listing",
    "PlanReport",
    "Progress",
    "Store",
    "VerifyReport",
    "check",
    "check_copy_options",
    "check_verify_config",
    "confirmed",
    "copy",
    "diff",
    "doctor",
    "dry_run",
    "dump_uri",
    "engines",
    "export",
    "export_uri",
    "import_",
    "inspect",
    "job_path",
    "jobs",
    "ls",
    "opened",
    "parse_uri",
    "plan",
    "plan_target",
    "refuse_writing_into_source",
    "remove_job",
    "require_collection",
    "run",
    "select_collections",
    "selection_of",
    "sync",
    "verify",
]
