"""The connector contract every engine implements (see DESIGN.md, "The connector contract")."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, TypeVar, runtime_checkable

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.config import ConnectorConfig
from vecmigrate.errors import ConfigError, VecmigrateError
from vecmigrate.filters import Node, fields, operators, parse
from vecmigrate.layout import conform
from vecmigrate.model import Capabilities, CollectionSchema, Metric, Partition, ResumeToken
from vecmigrate.records import table_to_batch
from vecmigrate.uri import ConnectionURI

IfExists = Literal["fail", "reuse", "replace"]
Filter = dict[str, Any]
IF_EXISTS_HINT = "pass --if-exists replace or reuse"
T = TypeVar("T")

# The contract's calls, run inside the engine's ``translate_error`` by the base class.
_CALLS = (
    "list_collections",
    "describe",
    "count",
    "partitions",
    "scan",
    "fetch",
    "create",
    "upsert",
    "upsert_table",
    "upsert_stream",
    "delete",
    "drop",
    "search",
    "search_records",
)


def _what(conn: Connector, verb: str, args: tuple[Any, ...]) -> str:
    """``pgvector upsert 'docs'``: the call a translated error names (never the URI's secrets)."""
    name = args[0] if args and isinstance(args[0], str) else None
    if name is None and args and isinstance(args[0], CollectionSchema):
        name = args[0].name
    return f"{conn.engine} {verb}" + (f" {name!r}" if name is not None else "")


def _translating(method: Callable[..., Any], verb: str) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: Connector, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except VecmigrateError:
            raise
        except Exception as exc:
            translated = self.translate_error(exc, _what(self, verb, args))
            if translated is None:
                raise
            raise translated from None

    call._translates = True  # type: ignore[attr-defined]
    return call


def _translating_scan(method: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    @functools.wraps(method)
    def scan(self: Connector, *args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            yield from method(self, *args, **kwargs)
        except VecmigrateError:
            raise
        except Exception as exc:
            translated = self.translate_error(exc, _what(self, "scan", args))
            if translated is None:
                raise
            raise translated from None

    scan._translates = True  # type: ignore[attr-defined]
    return scan


def _conforming(upsert: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(upsert)
    def conformed(self: Connector, name: str, batch: pa.RecordBatch, *a: Any, **kw: Any) -> None:
        # The writer conforms before retrying and dead-lettering, so this is one schema
        # comparison there; direct callers (the live router, tests) get the same layout.
        upsert(self, name, conform(batch, self._schema(name), strict=self.strict_layout), *a, **kw)

    conformed._conforms = True  # type: ignore[attr-defined]
    return conformed


def _conforming_table(upsert_table: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(upsert_table)
    def conformed(self: Connector, name: str, table: pa.Table, *a: Any, **kw: Any) -> None:
        schema = self._schema(name)
        layout = schema.arrow_schema()
        if not table.schema.equals(layout):
            chunks = [conform(b, schema, strict=self.strict_layout) for b in table.to_batches()]
            table = pa.Table.from_batches(chunks, schema=layout)
        upsert_table(self, name, table, *a, **kw)

    conformed._conforms = True  # type: ignore[attr-defined]
    return conformed


def _conforming_stream(upsert_stream: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(upsert_stream)
    def conformed(
        self: Connector, name: str, batches: Iterable[pa.RecordBatch], *a: Any, **kw: Any
    ) -> None:
        schema = self._schema(name)
        conformed_batches = (conform(b, schema, strict=self.strict_layout) for b in batches)
        upsert_stream(self, name, conformed_batches, *a, **kw)

    conformed._conforms = True  # type: ignore[attr-defined]
    return conformed


class Connector(ABC):
    """One engine, over its official client. Capabilities say what it cannot do."""

    schemes: ClassVar[tuple[str, ...]]
    capabilities: ClassVar[Capabilities]
    # The URI parameters it takes, typed (``connectors/config.py``).
    Config: ClassVar[type[ConnectorConfig]] = ConnectorConfig
    # How a plug-in's URIs are read (built-in engines declare this in connectors/registry):
    # a local ``path`` or a ``server``, and its default port.
    storage: ClassVar[Literal["path", "server", "service"]] = "server"
    default_port: ClassVar[int | None] = None
    # ``upsert`` refuses columns the schema does not declare instead of dropping them.
    strict_layout: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Every contract call runs inside the engine's one error mapping.
        for verb in _CALLS:
            method = cls.__dict__.get(verb)
            if method is not None and not getattr(method, "_translates", False):
                wrap = _translating_scan(method) if verb == "scan" else _translating(method, verb)
                setattr(cls, verb, wrap)
        # ``upsert`` receives batches in the collection's own layout.
        upsert = cls.__dict__.get("upsert")
        if upsert is not None and not getattr(upsert, "_conforms", False):
            cls.upsert = _conforming(upsert)  # type: ignore[method-assign]
        upsert_table = cls.__dict__.get("upsert_table")
        if upsert_table is not None and not getattr(upsert_table, "_conforms", False):
            cls.upsert_table = _conforming_table(upsert_table)  # type: ignore[method-assign]
        upsert_stream = cls.__dict__.get("upsert_stream")
        if upsert_stream is not None and not getattr(upsert_stream, "_conforms", False):
            cls.upsert_stream = _conforming_stream(upsert_stream)  # type: ignore[method-assign]
        # Every engine's ``create`` checks the schema first, so ``if_exists="replace"``
        # with a schema this engine cannot store never drops the collection it replaces.
        create = cls.__dict__.get("create")
        if create is not None and not getattr(create, "_checks_schema", False):

            @functools.wraps(create)
            def checked(self: Connector, schema: CollectionSchema, *a: Any, **kw: Any) -> None:
                self.check_schema(schema)
                create(self, schema, *a, **kw)

            checked._checks_schema = True  # type: ignore[attr-defined]
            cls.create = checked  # type: ignore[method-assign]

    def __init__(self, uri: ConnectionURI) -> None:
        self.uri = uri
        self.config = self.Config.from_uri(uri)
        # Schemas ``describe`` found (or ``create`` made), read through ``_schema``.
        self._schemas: dict[str, CollectionSchema] = {}
        self._stated_metrics: dict[tuple[str, str], Metric] = {}

    @property
    def engine(self) -> str:
        """Engine name as shown to users."""
        return self.schemes[0]

    # -- errors ------------------------------------------------------------------------------
    @classmethod
    def translate_error(cls, exc: Exception, what: str) -> VecmigrateError | None:
        """The engine's driver error as ``TransientError`` (retry may help),
        ``TerminalError``/``DataError`` (it will not) or ``ConfigError`` (fix the URI or
        permissions); None leaves ``exc`` (not the driver's: a bug) to surface as it is.

        The one place an engine maps its errors: the base class applies it around every
        contract call, and ``_call`` around a driver call that needs a sharper ``what``.
        """
        return None

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` with driver errors translated, naming ``what``."""
        try:
            return fn(*args, **kwargs)
        except VecmigrateError:
            raise
        except Exception as exc:
            translated = self.translate_error(exc, what)
            if translated is None:
                raise
            raise translated from None

    # -- discovery -------------------------------------------------------------------
    @abstractmethod
    def list_collections(self) -> list[str]:
        """Names of the collections (tables, indexes, classes) in this store."""

    @abstractmethod
    def describe(self, name: str) -> CollectionSchema:
        """Schema of ``name``: ids, vectors, metric, metadata types, index settings."""

    @abstractmethod
    def count(self, name: str, filter: Filter | None = None) -> int:
        """Exact number of records, optionally matching a portable filter."""

    # -- reading ---------------------------------------------------------------------
    @abstractmethod
    def partitions(self, name: str, n: int) -> list[Partition]:
        """At most ``n`` disjoint partitions that together cover the collection."""

    @abstractmethod
    def scan(
        self,
        name: str,
        partition: Partition,
        resume: ResumeToken | None = None,
        *,
        schema: CollectionSchema | None = None,
        batch_rows: int = 1000,
    ) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
        """Batches of one partition, each with the token to resume after it."""

    @abstractmethod
    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        """The records with these ids (missing ids are simply absent)."""

    # -- writing ---------------------------------------------------------------------
    @abstractmethod
    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        """Create the collection with deliberately mapped metric, types and index."""

    def check_schema(self, schema: CollectionSchema) -> None:
        """ConfigError when this engine cannot store ``schema`` as it is (run by every
        ``create`` before anything is dropped or created)."""
        caps, where = self.capabilities, f"{self.engine} collection {schema.name!r}"
        problems = []
        if schema.id_type not in caps.id_types:
            problems.append(f"{schema.id_type.value} ids")
        problems += [
            f"metric {v.metric.value} ({v.name})"
            for v in schema.vectors
            if v.metric not in caps.metrics
        ]
        if len(schema.vectors) > 1 and not caps.named_vectors:
            problems.append(f"{len(schema.vectors)} vector fields")
        if schema.sparse and not caps.sparse_vectors:
            problems.append("sparse vectors")
        if schema.namespaces is not None and not caps.namespaces:
            problems.append("namespaces")
        problems += [
            f"metadata type {m.type} ({m.name})"
            for m in schema.metadata
            if m.type not in caps.metadata_types
        ]
        if problems:
            raise ConfigError(
                f"{where} cannot hold {', '.join(problems)}; nothing was changed",
                hint="map the schema first (vecmigrate plan writes a mapping to edit)",
            )

    @abstractmethod
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        """Insert or replace by id; idempotent. Raises TransientError or TerminalError."""

    def upsert_table(self, name: str, table: pa.Table) -> None:
        """``upsert`` of several batches as one write (a bulk load's piece, see
        ``bulk_write_rows``); an engine that writes a table of chunks as it is overrides
        this, which spares concatenating them (a copy of every byte the piece holds)."""
        self.upsert(name, table_to_batch(table))

    def upsert_stream(self, name: str, batches: Iterable[pa.RecordBatch]) -> None:
        """``upsert`` of every batch ``batches`` yields, consumed as the engine writes (a
        bulk load's streamed piece, see ``bulk_stream_bytes``: an engine that appends a
        stream in one write overrides this, and then holds no piece in memory); returns
        once all are written. After a failure some may be written: upserting them again
        is safe. The default upserts each batch."""
        for batch in batches:
            self.upsert(name, batch)

    def streams_into(self, name: str) -> bool:
        """Whether ``upsert_stream`` writes collection ``name`` as one write now (an engine
        bulk-loading it by appends): a copy then hands it ``bulk_stream_bytes`` of batches
        per call as they are read; otherwise it writes bounded pieces."""
        return False

    @abstractmethod
    def delete(self, name: str, ids: Sequence[Any]) -> None:
        """Delete by id; missing ids are a no-op."""

    @abstractmethod
    def drop(self, name: str) -> None:
        """Remove the collection entirely (missing is a no-op)."""

    def collection_location(self, name: str) -> str | None:
        """The file or folder that holds collection ``name`` (or would, once created), for
        stores keeping each collection in its own file: two URIs can then name one
        collection (``parquet:///out`` + ``docs`` and ``parquet:///out/docs.parquet``).
        None: the store identity and the name say where a collection is."""
        return None

    def at_rest_key(self) -> bytes | None:
        """The key this store encrypts its data with (encrypted dumps), if any: records
        refused while copying out of or into it are sealed with it too."""
        return None

    def stored_digest(self, name: str) -> dict[str, Any] | None:
        """A content digest the engine keeps of collection ``name`` that is proven to
        describe what a scan of it reads (a dump's manifest), in ``CollectionDigest``'s
        JSON form; None when there is none. A copy's check uses it instead of reading the
        source again."""
        return None

    def begin_bulk_load(self, name: str) -> None:  # noqa: B027 - optional hook
        """A copy job is about to load ``name``, which it created. An engine may write
        faster until ``finalize`` as long as the result is what idempotent upserts give."""

    def finalize(self, name: str) -> None:  # noqa: B027 - optional hook
        """Called once after a job wrote every batch (e.g. a dump writes its manifest)."""

    # -- querying --------------------------------------------------------------------
    @abstractmethod
    def search(
        self,
        name: str,
        vectors: np.ndarray,
        k: int,
        *,
        filter: Filter | None = None,
        params: dict[str, Any] | None = None,
        vector_field: str | None = None,
    ) -> tuple[list[list[Any]], list[list[float]]]:
        """Top-k ids and engine scores per query vector."""

    def search_records(
        self,
        name: str,
        vectors: np.ndarray,
        k: int,
        *,
        filter: Filter | None = None,
        schema: CollectionSchema | None = None,
    ) -> tuple[list[list[Any]], list[list[float]], pa.RecordBatch]:
        """``search``, with the records it returned (each id once, in ``schema``'s layout):
        a search then a fetch here; an engine that returns records with its hits answers
        in one round trip (what a proxy serving an engine's query API needs)."""
        ids, scores = self.search(name, vectors, k, filter=filter)
        every = list(dict.fromkeys(i for row in ids for i in row))
        return ids, scores, self.fetch(name, every, schema=schema)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients, connections and files."""

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri})"

    def write_schema(self, name: str) -> CollectionSchema:
        """The schema writes into ``name`` are conformed to: the one ``create`` made or
        reused, else described. Unlike ``describe`` it does not read the collection again:
        a table another tool made, still empty, may not show what the copy told it."""
        return self._schema(name)

    def state_metric(self, name: str, field: str, metric: Metric) -> None:
        """Search ``name``'s vector ``field`` with ``metric`` where the collection records
        none (``metric_known`` is false: each query names one, as verify asks it with the
        metric a mapping states); a metric the collection records is never replaced."""
        self._stated_metrics[(name, field)] = metric

    # -- helpers for subclasses ----------------------------------------------------------
    def _schema(self, name: str) -> CollectionSchema:
        """The cached schema of ``name``, described on first use (with the metrics
        ``state_metric`` gave the fields that record none)."""
        schema = self._schemas.get(name) or self.describe(name)
        if not self._stated_metrics:
            return schema
        vectors = tuple(
            v.model_copy(update={"metric": self._stated_metrics[(name, v.name)]})
            if not v.metric_known and (name, v.name) in self._stated_metrics
            else v
            for v in schema.vectors
        )
        return schema.replace(vectors=vectors)

    def _keep_existing(
        self,
        name: str,
        exists: bool,
        if_exists: IfExists,
        what: str,
        *,
        describe: bool = True,
        hint: str = IF_EXISTS_HINT,
    ) -> bool:
        """Apply ``if_exists`` to a collection ``create`` is about to make.

        Missing, or ``replace``: False (create it; replacing is the caller's). ``fail``:
        ConfigError "<what> already exists". ``reuse``: True (keep it, after ``describe``
        shows it is readable unless ``describe=False``).
        """
        if not exists:
            return False
        if if_exists == "fail":
            raise ConfigError(f"{what} already exists", hint=hint)
        if if_exists == "reuse":
            if describe:
                self.describe(name)
            return True
        return False

    def _filter(self, schema: CollectionSchema, filter: Filter | None) -> Node | None:
        """Parse a portable filter and refuse operators this engine cannot express."""
        if not filter:
            return None
        node = parse(filter, schema)
        missing = operators(node) - self.capabilities.filter_ops
        if missing:
            raise ConfigError(
                f"{self.engine} cannot express filter operators {sorted(missing)}",
                hint=f"it supports {sorted(self.capabilities.filter_ops) or 'no filters'}",
            )
        stored_only = fields(node) & self.unfilterable(schema)
        if stored_only:
            raise ConfigError(
                f"{self.engine} cannot filter {schema.name!r} on {sorted(stored_only)}: "
                "stored with each record, not searchable",
                hint="filter on other fields",
            )
        return node

    def unfilterable(self, schema: CollectionSchema) -> frozenset[str]:
        """Metadata fields of ``schema`` that no filter can name here (kept with each
        record, as Chroma keeps a record's URI, but not searchable)."""
        return frozenset()


# -- optional capability: a change feed ---------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """One captured write to a source record: ``op`` is ``upsert``, ``delete`` or
    ``truncate`` (the whole collection was emptied: ``id`` is None)."""

    seq: int
    id: Any
    op: Literal["upsert", "delete", "truncate"]
    at: float


@runtime_checkable
class ChangeFeed(Protocol):
    """A connector that can record every write to a collection in commit order, so
    ``sync`` applies just the changes. Positions are opaque strings from the engine."""

    def install_change_capture(self, name: str) -> str:
        """Start recording writes to ``name`` (idempotent); returns where they are kept."""
        ...

    def remove_change_capture(self, name: str) -> None:
        """Stop recording and drop what was recorded (missing is a no-op)."""
        ...

    def change_capture_installed(self, name: str) -> bool:
        """Writes to ``name`` are being recorded."""
        ...

    def change_capture_id(self, name: str) -> str | None:
        """Identifies this installation (None when not installed): a position stored
        under an earlier installation does not cover writes made while none was."""
        ...

    def change_position(self, name: str) -> str:
        """A position covering every change committed before this call."""
        ...

    def changes(
        self, name: str, since: str, until: str, *, after_seq: int = 0, limit: int = 5000
    ) -> list[Change]:
        """Changes committed after ``since`` and by ``until`` with ``seq > after_seq``,
        ordered by ``seq``, at most ``limit``."""
        ...

    def change_backlog(self, name: str, since: str) -> tuple[int, float]:
        """(changes committed after ``since``, age in seconds of the oldest of them)."""
        ...

    def prune_changes(self, name: str, upto: str) -> int:
        """Delete recorded changes committed by ``upto``; returns how many."""
        ...
