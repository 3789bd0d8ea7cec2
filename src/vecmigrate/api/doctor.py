"""``ls`` and ``doctor``: what a store holds, and whether it can be reached, read and
(asked) written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vecmigrate.api.stores import (
    Store,
    opened,
    parse_uri,
)
from vecmigrate.connectors import Connector
from vecmigrate.connectors.registry import REGISTRY
from vecmigrate.errors import VecmigrateError
from vecmigrate.model import CollectionSchema
from vecmigrate.uri import redact


@dataclass(frozen=True)
class Listing:
    """``ls``: the collections of a store with their record counts."""

    uri: str
    collections: tuple[tuple[str, int], ...]

    @property
    def ok(self) -> bool:
        """Always True: listing succeeded."""
        return True

    def to_json(self) -> dict[str, Any]:
        """JSON form (docs/cli-json.md)."""
        return {
            "uri": redact(self.uri),
            "collections": [{"name": n, "count": c} for n, c in self.collections],
            "total": sum(c for _, c in self.collections),
        }


def ls(source: Store) -> Listing:
    """The collections of ``source`` (read-only) with their counts, sorted by name."""
    with opened(source, read_only=True) as conn:
        names = sorted(conn.list_collections())
        return Listing(str(conn.uri.raw), tuple((n, conn.count(n)) for n in names))


@dataclass(frozen=True)
class DoctorCheck:
    """One check of ``doctor``: its name, whether it passed, what was found, a hint when
    it failed (``skipped``: not run, neither a pass nor a failure)."""

    name: str
    ok: bool
    detail: str
    hint: str | None = None
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {k: redact(v) if isinstance(v, str) else v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class DoctorReport:
    """Every check ``doctor`` ran on a store; ``ok``: none failed."""

    uri: str
    engine: str | None
    checks: tuple[DoctorCheck, ...]

    @property
    def ok(self) -> bool:
        """No check failed."""
        return all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """JSON form (docs/cli-json.md)."""
        return {
            "uri": redact(self.uri),
            "engine": self.engine,
            "ok": self.ok,
            "checks": [c.to_json() for c in self.checks],
        }


def _client_version(extra: str | None) -> str | None:
    """The installed version of the first distribution the extra requires."""
    import re
    from importlib.metadata import PackageNotFoundError, requires, version

    if not extra:
        return None
    try:
        reqs = requires("vecmigrate") or []
    except PackageNotFoundError:
        return None
    for req in reqs:
        if f'extra == "{extra}"' in req:
            name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
            try:
                return f"{name} {version(name)}"
            except PackageNotFoundError:
                continue
    return None


def _server_version(conn: Connector) -> str | None:
    """The engine's version where the connector exposes one (None otherwise)."""
    for attr in ("server_version", "version"):
        value = getattr(conn, attr, None)
        if callable(value):
            value = value()
        if value:
            return ".".join(map(str, value)) if isinstance(value, tuple) else str(value)
    return None


def _capabilities_line(conn: Connector) -> str:
    caps = conn.capabilities
    parts = [
        "metrics " + ",".join(sorted(m.value for m in caps.metrics)),
        "ids " + ",".join(sorted(i.value for i in caps.id_types)),
        f"max batch {caps.max_batch_rows} rows",
    ]
    parts += [
        name
        for name, on in (
            ("named vectors", caps.named_vectors),
            ("sparse", caps.sparse_vectors),
            ("namespaces", caps.namespaces),
            ("documents", caps.documents),
        )
        if on
    ]
    parts.append("mutable" if caps.mutable else "append-only")
    return ", ".join(parts)


def _failure(exc: Exception) -> tuple[str, str | None]:
    """(message, hint) of an exception a check caught."""
    if isinstance(exc, VecmigrateError):
        return exc.message, exc.hint
    return f"{type(exc).__name__}: {exc}", None


def _probe_write(store: str) -> DoctorCheck:
    """Create a scratch collection, write one record, count it, drop it."""
    import uuid

    import numpy as np

    from vecmigrate.model import IdType, Metric, VectorField
    from vecmigrate.records import build_batch

    name = f"vecmigrate_doctor_{uuid.uuid4().hex[:8]}"
    try:
        with opened(store, read_only=False) as conn:
            caps = conn.capabilities
            metric = Metric.COSINE if Metric.COSINE in caps.metrics else next(iter(caps.metrics))
            id_type = IdType.STRING if IdType.STRING in caps.id_types else IdType.INT
            schema = CollectionSchema(
                name=name, vectors=(VectorField(dim=4, metric=metric),), id_type=id_type
            )
            conn.create(schema)
            try:
                ids = ["doctor-1"] if id_type == IdType.STRING else [1]
                vec = np.array([[0.5, 0.5, 0.5, 0.5]], dtype=np.float32)
                conn.upsert(name, build_batch(schema, ids, {"vector": vec}))
                conn.finalize(name)
                counted = conn.count(name)
            finally:
                conn.drop(name)
    except Exception as exc:
        message, hint = _failure(exc)
        return DoctorCheck(
            "write", False, message, hint or "check that this user may create and drop collections"
        )
    return DoctorCheck(
        "write", True, f"created, wrote 1 record ({counted} counted) and dropped {name!r}"
    )


def doctor(store: str, *, write: bool = False) -> DoctorReport:
    """Check a store: the URI and its client, the connection, the listing, the engine's
    version (where the connector exposes one), its capabilities, and with ``write`` a
    write permission probe (a scratch collection created and dropped). Never raises for
    a failed check: each failure is a check with ``ok=False`` and a hint."""
    from vecmigrate.connectors.registry import connector_class

    checks: list[DoctorCheck] = []
    try:
        parsed = parse_uri(store)
        cls = connector_class(parsed.scheme)
        cls.Config.from_uri(parsed)
    except VecmigrateError as exc:
        checks.append(DoctorCheck("uri", False, exc.message, exc.hint))
        return DoctorReport(store, None, tuple(checks))
    extra = REGISTRY[parsed.scheme].extra if parsed.scheme in REGISTRY else None
    client = _client_version(extra)
    checks.append(
        DoctorCheck("uri", True, f"{cls.schemes[0]} connector" + (f", {client}" if client else ""))
    )
    try:
        with opened(store, read_only=True) as conn:
            checks.append(DoctorCheck("connect", True, f"opened {conn.uri} read-only"))
            try:
                names = conn.list_collections()
                checks.append(DoctorCheck("read", True, f"{len(names)} collection(s) listed"))
            except Exception as exc:
                message, hint = _failure(exc)
                hint = hint or "check that this user may read the store"
                checks.append(DoctorCheck("read", False, message, hint))
            version = _server_version(conn)
            checks.append(
                DoctorCheck("version", True, f"server {version}")
                if version
                else DoctorCheck("version", True, "the connector does not expose one", skipped=True)
            )
            checks.append(DoctorCheck("capabilities", True, _capabilities_line(conn)))
    except Exception as exc:
        checks.append(DoctorCheck("connect", False, *_failure(exc)))
        return DoctorReport(store, cls.schemes[0], tuple(checks))
    if write:
        checks.append(_probe_write(store))
    else:
        checks.append(
            DoctorCheck(
                "write",
                True,
                "not probed (--write creates and drops a scratch collection)",
                skipped=True,
            )
        )
    return DoctorReport(store, cls.schemes[0], tuple(checks))
