"""``namespaces: {to: collections}``: one namespaced source collection copied into one
target collection per namespace.

Design (why it is shaped this way):

* The source is scanned **once**, with the ordinary partitions and resume tokens: the
  fan-out happens in the write step. ``NamespaceRouter`` has the ``RecordWriter``
  interface (``write(batch) -> Written``) and holds one ``RecordWriter`` per target
  collection; each source batch is split by its ``namespace`` column (one stable sort,
  no per-record Python objects) and each slice goes through that namespace's writer,
  which validates, maps (the namespace column is dropped by the target layout), splits
  and upserts exactly like a plain copy.
* A partition's token is checkpointed only after every slice of the batch was
  acknowledged, so a kill + ``--resume`` replays at most the batches in flight, and
  upserts are idempotent: the collections end identical to an uninterrupted run.
* Target collections are created up front, before anything is written, from the
  namespaces the source schema declares (a name the target refuses stops the copy
  there). A namespace met that the schema did not declare gets its collection when its
  first record arrives; if that collection cannot be created, its records are refused
  (dead-lettered with the reason). Lazily created names are recorded in the job, so a
  resumed run finalizes them even when it never meets that namespace again.
* Records without a namespace have no collection: refused (or ``on_invalid: fail``).
* ``{collection}`` in the pattern is the target name (``--target-collection``, the
  mapping's ``target_collection``, or the source name).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.base import Connector, IfExists
from vecmigrate.errors import ConfigError, DataError, TransientError, VecmigrateError
from vecmigrate.mapping import Mapping
from vecmigrate.mapping.spec import MappingSpec, NamespaceSpec
from vecmigrate.model import CollectionSchema
from vecmigrate.pipeline.deadletter import DeadLetterSink
from vecmigrate.pipeline.jobstate import JobState
from vecmigrate.pipeline.writer import RecordWriter, Written
from vecmigrate.retry import RetryPolicy

log = logging.getLogger("vecmigrate.copy")
_FORBIDDEN = set("/\\\x00")


def fan_out_spec(spec: MappingSpec | None) -> NamespaceSpec | None:
    """The namespace spec when the mapping sends namespaces to collections."""
    ns = spec.namespaces if spec else None
    return ns if ns is not None and ns.to == "collections" else None


def collection_name(pattern: str, collection: str, namespace: str) -> str:
    """The target collection of ``namespace``; ConfigError for a name no engine should
    take (empty, ``.``/``..``, path separators or control characters). Engine-specific
    rules are the target connector's: its ``create`` refuses what it cannot take."""
    name = pattern.format(collection=collection, namespace=namespace)
    why = (
        "the namespace is empty (the default namespace)"
        if not namespace
        else f"the name {name!r} is a path, or has path separators or control characters"
        if name in (".", "..") or _FORBIDDEN & set(name) or any(ord(c) < 32 for c in name)
        else None
    )
    if why:
        raise ConfigError(
            f"namespace {namespace!r} of {collection!r} cannot name a target collection: {why}",
            hint="choose another namespaces.pattern, or copy that namespace separately",
        )
    return name


def create_collection(
    target: Connector, schema: CollectionSchema, namespace: str, if_exists: IfExists
) -> None:
    """Create one namespace's collection; the target's refusal names the namespace."""
    try:
        target.create(schema, if_exists=if_exists)
    except TransientError:
        raise
    except VecmigrateError as exc:
        raise ConfigError(
            f"target collection {schema.name!r} for namespace {namespace!r}: {exc.message}",
            hint=exc.hint or "choose another namespaces.pattern",
        ) from exc
    except Exception as exc:  # an engine client's own error for a name it refuses
        raise ConfigError(
            f"the target cannot create {schema.name!r} for namespace {namespace!r}: {exc}",
            hint="choose another namespaces.pattern",
        ) from exc


def split_by_namespace(batch: pa.RecordBatch) -> Iterable[tuple[str | None, pa.RecordBatch]]:
    """The batch's rows grouped by namespace (None: rows without one), original order
    kept within each group."""
    if batch.num_rows == 0:
        return
    col = batch.column("namespace")
    encoded = col.dictionary_encode()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    values = encoded.dictionary.to_pylist()
    order = np.argsort(codes, kind="stable")
    ordered = codes[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        code = int(ordered[start])
        yield (None if code < 0 else values[code]), batch.take(pa.array(order[start:end]))


class NamespaceRouter:
    """Writes source batches into one target collection per namespace (see module doc)."""

    def __init__(
        self,
        target: Connector,
        collection: str,
        target_name: str,
        pattern: str,
        source_schema: CollectionSchema,
        mapping: Mapping,
        dead: DeadLetterSink,
        retry: RetryPolicy,
        batch_rows: int,
        *,
        names: dict[str, str] | None = None,
        if_exists: IfExists = "fail",
        on_create: Callable[[str, str], None] | None = None,
    ) -> None:
        self.target, self.collection, self.target_name = target, collection, target_name
        self.pattern, self.source_schema, self.mapping = pattern, source_schema, mapping
        self.dead, self.retry, self.batch_rows = dead, retry, batch_rows
        self.if_exists, self.on_create = if_exists, on_create
        self.names = dict(names or {})  # namespace -> collection, those already created
        self.recorded: dict[str, str] = {}  # lazily created by an earlier run of the job
        self._writers: dict[str, RecordWriter] = {}
        self._refused: dict[str, str] = {}  # namespace -> why its collection is missing
        self._lock = threading.Lock()

    def _writer(self, namespace: str) -> RecordWriter | str:
        """The namespace's writer, creating its collection on first sight; or the reason
        its records are refused."""
        with self._lock:
            if namespace in self._writers:
                return self._writers[namespace]
            if namespace in self._refused:
                return self._refused[namespace]
            name = self.names.get(namespace)
            if name is None:
                try:
                    name = collection_name(self.pattern, self.target_name, namespace)
                    if name.casefold() in {n.casefold() for n in self.names.values()}:
                        raise ConfigError(
                            f"namespace {namespace!r}: {name!r} differs only in case from "
                            "another namespace's collection"
                        )
                    if self.on_create:  # recorded first: a kill during create is covered
                        self.on_create(namespace, name)
                    create_collection(
                        self.target,
                        self.mapping.target.replace(name=name),
                        namespace,
                        self.if_exists,
                    )
                    self.target.begin_bulk_load(name)
                except ConfigError as exc:
                    log.warning("namespace %r refused: %s", namespace, exc)
                    self._refused[namespace] = str(exc)
                    return self._refused[namespace]
                log.info("namespace %r not declared by the source: created %r", namespace, name)
                self.names[namespace] = name
            writer = RecordWriter(
                self.target,
                name,
                self.collection,
                self.source_schema,
                self.mapping,
                self.dead,
                self.retry,
                self.batch_rows,
            )
            self._writers[namespace] = writer
            return writer

    def create_declared(self, if_exists: IfExists) -> None:
        """Create the collection of every namespace the source schema declares (and
        re-open those an earlier run created lazily); lazy creates use ``if_exists`` too."""
        self.if_exists = if_exists
        self.names = prepare_collections(
            self.target,
            self.mapping.target,
            self.target_name,
            self.pattern,
            self.source_schema.namespaces or (),
            self.recorded,
            if_exists,
        )

    def finish(self) -> list[dict[str, object]]:
        """Finalize every target collection; each one's namespace, name and row count."""
        out: list[dict[str, object]] = []
        for namespace, name in sorted(self.names.items()):
            self.target.finalize(name)
            out.append({"namespace": namespace, "name": name, "rows": self.target.count(name)})
        return out

    def write(self, batch: pa.RecordBatch) -> Written:
        """Route each row to its namespace's collection; refuse rows that have none."""
        done = Written()
        for namespace, rows in split_by_namespace(batch):
            writer = self._writer(namespace) if namespace is not None else None
            if isinstance(writer, RecordWriter):
                done.add(writer.write(rows))
                continue
            reason = writer or (
                "the record has no namespace: namespaces to collections has no collection for it"
            )
            if self.mapping.spec.on_invalid == "fail":
                raise DataError(
                    reason,
                    collection=self.collection,
                    record_id=rows.column("id")[0].as_py(),
                    field="namespace",
                    hint="fix the data or set on_invalid: dead_letter in the mapping",
                )
            self.dead.write(rows, reason, "namespace")
            done.refused += rows.num_rows
        return done


def prepare_collections(
    target: Connector,
    schema: CollectionSchema,
    target_name: str,
    pattern: str,
    declared: Iterable[str],
    recorded: dict[str, str],
    if_exists: IfExists,
) -> dict[str, str]:
    """Create the collection of every declared namespace (names all checked before the
    first is created) and re-open those a previous run created lazily (``recorded``);
    namespace -> collection name. ConfigError names the namespace a target refuses."""
    names = {ns: collection_name(pattern, target_name, ns) for ns in declared}
    folded: dict[str, str] = {}
    for ns, name in names.items():
        # Some engines fold case (Weaviate capitalises, others lower-case): two names
        # equal but for case would silently become one collection there.
        other = folded.setdefault(name.casefold(), ns)
        if other != ns:
            raise ConfigError(
                f"namespaces {other!r} and {ns!r} of {target_name!r} give collection names "
                "that differ only in case",
                hint="copy one of them separately, or use namespaces: {to: field}",
            )
    for ns, name in names.items():
        create_collection(target, schema.replace(name=name), ns, if_exists)
    for ns, name in recorded.items():
        if ns in names:
            continue
        try:
            create_collection(target, schema.replace(name=name), ns, "reuse")
        except ConfigError as exc:  # refused last time too; its records are refused again
            log.warning("namespace %r: %s", ns, exc)
            continue
        names[ns] = name
    return names


def open_router(
    target: Connector,
    job: JobState,
    collection: str,
    target_name: str,
    pattern: str,
    source_schema: CollectionSchema,
    mapping: Mapping,
    dead: DeadLetterSink,
    retry: RetryPolicy,
    batch_rows: int,
) -> NamespaceRouter:
    """A router for one copy job: collections it creates lazily are recorded in the job
    (before creating, so a kill during create is covered) for a resumed run to finalize."""
    recorded: dict[str, str] = json.loads(job.get("ns_collections") or "{}")

    def record(namespace: str, name: str) -> None:
        recorded[namespace] = name
        job.set("ns_collections", json.dumps(recorded, sort_keys=True))

    router = NamespaceRouter(
        target,
        collection,
        target_name,
        pattern,
        source_schema,
        mapping,
        dead,
        retry,
        batch_rows,
        on_create=record,
    )
    router.recorded = dict(recorded)
    return router
