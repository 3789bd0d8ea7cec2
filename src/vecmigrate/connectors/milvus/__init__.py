"""Milvus: ``milvus://host:19530?token=env:MILVUS_TOKEN`` or ``milvus-lite:///path/x.db``.

A collection made by vecmigrate (layout ``json``) has a primary key ``id`` (INT64 or
VARCHAR), one FLOAT_VECTOR field per vector field, one SPARSE_FLOAT_VECTOR field per
sparse field (``_sparse``; servers 2.4+ and lite), ``document`` VARCHAR, ``metadata`` JSON
(typed values, nulls omitted), ``metadata_extra`` VARCHAR (canonical JSON text, ``""`` for
none) and ``metadata_present`` JSON (``{"fields": {name: bool}, "document": bool}``).

Why JSON and not one typed scalar field per metadata field: milvus-lite and servers before
2.5 have no nullable fields, and a non-nullable typed field cannot tell a missing value
from a default. JSON keeps int vs float, bools, lists and absence exactly (see
``_filters`` for how filters test presence).

Servers must be Milvus 2.3 or newer (upsert, JSON containment). Server and lite differ in:
indexes (a server builds FLAT, IVF_FLAT, IVF_PQ, HNSW with explicit parameters; lite only
FLAT, IVF_FLAT and AUTOINDEX, so other kinds are substituted and noted), ``not`` in
expressions (server only), and the literal -2**63 (lite only). ``describe`` reports the
index each vector field really has, read back from the engine. Every read is
``consistency_level="Strong"``: a job reads what it wrote.

The vecmigrate schema is the collection description (milvus-lite silently drops collection
properties). Collections made by other tools (layout ``columns``) are read as they are laid
out (``_infer``): any primary key, the text in a VARCHAR field, every vector field with its
index's metric (sampled where a field has no index), scalar fields, and the keys of a JSON
metadata field and of dynamic fields as typed metadata fields.

With ``?layout=langchain`` / ``?layout=llamaindex`` collections are read and written as
LangChain's ``Milvus`` and LlamaIndex's ``MilvusVectorStore`` keep them (``_frameworks``).

With ``?bulk_dir=/dir`` (a directory the server reads at the same path) a copy into a
collection it created empty stages its batches there and, from ``bulk_insert_rows`` rows
(default 100,000; 0: never), bulk-inserts them from Parquet parts, the last ones at
``finalize``, which waits until every row is readable (``_bulk``); fewer are upserted at
``finalize``. Until then, reads do not see staged rows.

Helper modules: ``_client`` (connecting, version check, error mapping),
``_schema`` (collection layout and indexes), ``_infer`` (other tools' collections),
``_frameworks`` (the frameworks' collections), ``_records`` (rows to and from Arrow),
``_filters`` (filters as expressions), ``_sparse`` (sparse vectors), ``_bulk`` (bulk insert)
and ``_bulk_stage`` (batches as the rows it imports).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pymilvus import MilvusClient

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.connectors.config import Secret
from vecmigrate.connectors.foreign import SAMPLE_ROWS, FieldsConfig
from vecmigrate.connectors.frameworks import parse_layout
from vecmigrate.connectors.milvus import _frameworks
from vecmigrate.connectors.milvus._bulk import BulkLoad, Lander, stage_dir, supports
from vecmigrate.connectors.milvus._bulk_stage import keep_last_copies
from vecmigrate.connectors.milvus._client import check_version, connect, translate_error
from vecmigrate.connectors.milvus._filters import LAYOUT_KEY, Compiler, ids_in, pk, typed_ids
from vecmigrate.connectors.milvus._infer import foreign_reuse_problems, infer_schema
from vecmigrate.connectors.milvus._records import (
    PAGE,
    batch_to_rows,
    check_ids,
    output_fields,
    pages,
    rows_to_batch,
)
from vecmigrate.connectors.milvus._schema import (
    METRIC_OF,
    SCHEMA_MARK,
    check_creatable,
    new_collection,
    search_params,
    stored_schema,
)
from vecmigrate.connectors.partitions import key_range_partitions
from vecmigrate.errors import ConfigError
from vecmigrate.filters import ALL_OPS
from vecmigrate.idkeys import SeenKeys, id_keys
from vecmigrate.model import (
    Capabilities,
    CollectionSchema,
    IdType,
    Metric,
    Partition,
    ResumeToken,
)
from vecmigrate.uri import ConnectionURI

_LITE_INDEXES = frozenset({"flat", "ivf_flat", "auto"})


log = logging.getLogger(__name__)
# engine_settings: the partitions an application made (records are read from all of them).
PARTITIONS_KEY = "milvus.partitions"


@dataclass(frozen=True)
class MilvusConfig(FieldsConfig):
    """TLS and token of a Milvus server; the fields of collections other tools made
    (``connectors/foreign.py``); ``layout``: ``langchain`` / ``llamaindex`` for the
    collections those frameworks keep (``_frameworks``); bulk insert (``_bulk``):
    ``bulk_dir`` a directory this process writes and the server reads at the same path
    (unset: no bulk insert), ``bulk_insert_rows`` the fewest rows a copy bulk-inserts
    (0: never), ``bulk_part_rows`` rows per imported Parquet file, ``bulk_timeout``
    seconds to wait for the imports after the last batch."""

    secure: bool = False
    token: Secret | None = None
    layout: str | None = None
    bulk_dir: str | None = None
    bulk_insert_rows: int = 100_000
    bulk_part_rows: int = 100_000  # _bulk.PART_ROWS; a literal: read without pymilvus
    bulk_timeout: float = 900.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", parse_layout(self.layout, "milvus"))
        if self.bulk_insert_rows < 0 or self.bulk_part_rows < 1 or self.bulk_timeout <= 0:
            raise ConfigError(
                f"milvus:// bulk_insert_rows={self.bulk_insert_rows}, bulk_part_rows="
                f"{self.bulk_part_rows}, bulk_timeout={self.bulk_timeout}: need "
                "bulk_insert_rows >= 0, bulk_part_rows >= 1 and bulk_timeout > 0",
                hint="bulk_insert_rows=0 turns bulk insert off",
            )


class MilvusConnector(Connector):
    """Milvus collections on a server, over pymilvus' ``MilvusClient``.

    ``capabilities`` are those of a current server; ``capabilities_for(server_version)``
    narrows them for older ones (``check_schema`` applies it). ``MilvusLiteConnector``
    is the embedded milvus-lite.
    """

    Config = MilvusConfig
    config: MilvusConfig

    schemes = ("milvus",)
    lite: ClassVar[bool] = False
    capabilities = Capabilities(
        filter_ops=ALL_OPS,
        id_types=frozenset(IdType),
        metrics=frozenset(METRIC_OF),
        named_vectors=True,
        sparse_vectors=True,
        sparse_metrics=frozenset({Metric.DOT}),
        sparse_modifiers=frozenset(),
        max_batch_rows=2000,
        max_batch_bytes=32 * 1024 * 1024,
        max_metadata_bytes=65536,
        index_kinds=frozenset({"flat", "ivf_flat", "ivf_pq", "hnsw", "auto"}),
        full_text=True,  # BM25 functions over the document field (Milvus 2.5, Milvus Lite)
    )
    MIN_PARTITION_ROWS = 1000

    translate_error = staticmethod(translate_error)

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        self._loaded: set[str] = set()
        self._lock = threading.Lock()
        if self.lite and self.config.bulk_dir:
            raise ConfigError(
                f"{uri.scheme}:// has no bulk insert; drop bulk_dir",
                hint="bulk_dir is for a Milvus server that reads that directory",
            )
        # Collections being bulk-loaded: their batches are staged until ``finalize``.
        self._bulk: dict[str, BulkLoad] = {}
        # Import task ids each collection's bulk loads completed (reported, and tests).
        self.bulk_tasks: dict[str, list[int]] = {}
        # Milvus Lite collections being loaded from empty: the ids written so far, so that
        # an id's first copy is inserted and only a repeat upserted (``_insert_or_upsert``).
        self._inserting: dict[str, SeenKeys] = {}
        self._insert_lock = threading.Lock()
        # Collections whose rows repeat primary keys: the keys a walk found (``count``).
        self._keys: dict[str, int] = {}
        self._warned: set[tuple[str, str]] = set()

    @classmethod
    def capabilities_for(cls, server_version: tuple[int, int] | None) -> Capabilities:
        """What a server of ``server_version`` stores (None: it does not say, so the
        class's): 2.4 added several vector fields per collection and SPARSE_FLOAT_VECTOR."""
        if server_version is not None and server_version < (2, 4):
            return cls.capabilities.model_copy(
                update={"named_vectors": False, "sparse_vectors": False, "full_text": False}
            )
        if server_version is not None and server_version < (2, 5):
            return cls.capabilities.model_copy(update={"full_text": False})
        return cls.capabilities

    @cached_property
    def _client(self) -> MilvusClient:
        return self._call(
            f"cannot connect to {self.uri}",
            connect,
            self.uri,
            self.lite,
            self.config.secure,
            self.config.token,
        )

    @property
    def client(self) -> MilvusClient:
        """The connector's own pymilvus client, opened on first use, when a server older
        than 2.3 is refused too."""
        client = self._client
        self.server_version  # noqa: B018 - reads (and checks) the version once
        return client

    @cached_property
    def server_version(self) -> tuple[int, int] | None:
        """The server's (major, minor), read on first use; None for milvus-lite and for
        servers that do not say (managed ones). ConfigError below 2.3."""
        if self.lite:
            return None
        text = self._call(f"{self.uri}: get_server_version", self._client.get_server_version)
        return check_version(str(text), self.uri)

    def close(self) -> None:
        for load in self._bulk.values():  # staged rows stay for a --resume to land
            load.close()
        client = self.__dict__.pop("_client", None)  # never opened: nothing to close
        if client is not None:
            with contextlib.suppress(Exception):  # closing must not fail a job
                client.close()

    def _exists(self, name: str) -> bool:
        return bool(self._call(f"{self.uri}: has_collection", self.client.has_collection, name))

    def _ensure_loaded(self, name: str) -> None:
        """Collections reopen released; search and query need them loaded."""
        if name in self._loaded:
            return
        if not self._exists(name):
            raise ConfigError(f"Milvus at {self.uri} has no collection {name!r}")
        with self._lock:
            self._call(f"{self.uri}: load {name!r}", self.client.load_collection, name)
            self._loaded.add(name)

    # -- discovery -------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        return sorted(self._call(f"{self.uri}: list_collections", self.client.list_collections))

    def describe(self, name: str) -> CollectionSchema:
        if not self._exists(name):
            raise ConfigError(f"Milvus at {self.uri} has no collection {name!r}")
        info = self._call(f"{self.uri}: describe {name!r}", self.client.describe_collection, name)
        indexes = self._index_info(name)
        desc = str(info.get("description") or "")
        if desc.startswith(SCHEMA_MARK):
            schema = stored_schema(desc, indexes, name, self.engine)
        elif self.config.layout:
            sample = partial(self._sample, name)
            schema = _frameworks.describe(
                name, info, indexes, self.engine, self.config, self.config.layout, sample
            )
        else:
            sample = partial(self._sample, name)
            schema = infer_schema(name, info, indexes, self.engine, self.config, sample)
        settings = {k: v for k, v in schema.engine_settings.items() if k != PARTITIONS_KEY}
        named = self._named_partitions(name, info)
        if named:
            settings[PARTITIONS_KEY] = named
        schema = schema.replace(engine_settings=settings)
        self._schemas[name] = schema
        return schema

    def _first_warning(self, name: str, what: str) -> bool:
        """Whether ``what`` was not yet said of ``name`` (each scan plans partitions)."""
        first = (name, what) not in self._warned
        self._warned.add((name, what))
        return first

    def _named_partitions(self, name: str, info: dict[str, Any]) -> list[str]:
        """The partitions an application made (``create_partition``) beside ``_default``;
        none for a partition-key collection, whose partitions Milvus makes and names, and
        on Milvus Lite, which has only ``_default`` (and no call to list them)."""
        if self.lite or any(f.get("is_partition_key") for f in info.get("fields", [])):
            return []
        listed = self._call(f"{self.uri}: list_partitions", self.client.list_partitions, name)
        return sorted(str(p) for p in listed if p != "_default")

    def _sample(self, name: str, fields: list[str]) -> list[dict[str, Any]]:
        """Up to SAMPLE_ROWS rows of ``fields`` (describing another tool's collection)."""
        return self._query(name, "", fields, limit=SAMPLE_ROWS)

    def _index_info(self, name: str) -> dict[str, dict[str, Any]]:
        """The index of each indexed field, as the engine reports it."""
        out: dict[str, dict[str, Any]] = {}
        for idx in self._call(f"{self.uri}: list_indexes", self.client.list_indexes, name):
            d = self._call(f"{self.uri}: describe_index", self.client.describe_index, name, idx)
            if d:
                out[str(d.get("field_name", idx))] = dict(d)
        return out

    def count(self, name: str, filter: Filter | None = None) -> int:
        if filter is None and name in self._keys:  # rows repeating a key (``partitions``)
            return self._keys[name]
        schema = self._schema(name)
        expr = self._expr(schema, filter)
        res = self._query(name, expr, ["count(*)"])
        return int(res[0]["count(*)"]) if res else 0

    def _query(self, name: str, expr: str, fields: list[str], **kw: Any) -> list[dict[str, Any]]:
        """Rows matching ``expr``; strongly consistent: a job reads what it wrote."""
        self._ensure_loaded(name)
        rows = self._call(
            f"{self.uri}: query {name!r}",
            self.client.query,
            name,
            filter=expr,
            output_fields=fields,
            consistency_level="Strong",
            **kw,
        )
        return [dict(r) for r in rows]

    def _expr(self, schema: CollectionSchema, filter: Filter | None) -> str:
        node = self._filter(schema, filter)
        return "" if node is None else Compiler(schema, has_not=not self.lite).compile(node)

    # -- writing schema --------------------------------------------------------------------
    def check_schema(self, schema: CollectionSchema) -> None:
        """Milvus's own words for what the connected server (``capabilities_for`` its
        version) cannot store, then the generic check (the base class runs this before
        ``create`` may drop anything)."""
        check_creatable(schema, self.capabilities_for(self.server_version), str(self.uri))
        super().check_schema(schema)

    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        exists = self._exists(schema.name)
        what = f"Milvus collection {schema.name!r}"
        if self._keep_existing(schema.name, exists, if_exists, what):
            self._check_reuse(schema)
            return
        if exists:
            self.drop(schema.name)
        if self.config.layout:
            ms, index, stored = _frameworks.new_collection(
                self.client, schema, self.config.layout, self.engine
            )
        else:
            ms, index, stored = new_collection(
                self.client, schema, self.capabilities.index_kinds, self.engine
            )
            indexed = [m.name for m in schema.metadata if m.indexed]
            if indexed:  # a filter-serving index the target cannot have: said, not dropped
                log.warning(
                    "%s: the source indexes %s; vecmigrate keeps metadata in one JSON field "
                    "on Milvus, which indexes no JSON path here: filters on them scan",
                    schema.name,
                    ", ".join(indexed),
                )
        self._call(
            f"{self.uri}: create {schema.name!r}",
            self.client.create_collection,  # creates the index and loads the collection
            schema.name,
            schema=ms,
            index_params=index,
            consistency_level="Strong",
        )
        self._schemas[schema.name] = stored
        self._loaded.add(schema.name)

    def _check_reuse(self, schema: CollectionSchema) -> None:
        """A framework collection kept for ``schema``'s records: ConfigError naming what
        does not fit, before the first write; the records' fields are written from then on."""
        have = self._schema(schema.name)
        if _frameworks.framework(have) is None:
            if have.engine_settings.get(LAYOUT_KEY) != "columns":
                return  # laid out by vecmigrate: its own check_schema applies
            problems = foreign_reuse_problems(schema, have)
            if problems:
                raise ConfigError(
                    f"Milvus collection {schema.name!r} (made by another tool) cannot take "
                    f"these records as they are: {'; '.join(problems)}; nothing was written",
                    hint="map the records to its fields in a mapping file (vecmigrate plan "
                    "--write-map writes one to edit), or copy into a new collection",
                )
            return
        problems = _frameworks.reuse_problems(schema, have)
        if problems:
            raise ConfigError(
                f"Milvus collection {schema.name!r} cannot take these records as it is laid "
                f"out: {'; '.join(problems)}; nothing was written",
                hint="copy into a new collection, or map the records to its fields",
            )
        self._schemas[schema.name] = have.replace(
            id_type=schema.id_type,
            metadata=schema.metadata,
            has_document=schema.has_document,
        )

    # -- reading ---------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        """Disjoint primary-key ranges ``(after, upto]`` with open outer ends.

        Bounds come from one primary-key-only pass in key order, so ranges are exact. The
        pass also counts the keys: Milvus keeps every row an insert wrote, a key inserted
        twice included, and counts them all, while its reads return one row of each
        key. Where they differ, the records are the keys (``count`` says so from then on,
        and a warning why), not the rows.
        """
        self._keys.pop(name, None)
        total = self.count(name)
        n = max(1, min(n, total // self.MIN_PARTITION_ROWS + 1))
        schema = self._schema(name)
        named = schema.engine_settings.get(PARTITIONS_KEY)
        if named and self._first_warning(name, "partitions"):
            log.warning(
                "Milvus collection %r keeps records in partitions %s besides _default: every "
                "record is read, and which partition held it is not carried (an application "
                "searching one partition by name searches them all on the target)",
                name, ", ".join(named),
            )  # fmt: skip
        key = pk(schema)
        cuts = {total * i // n for i in range(1, n)}
        uppers: list[Any] = []
        seen = 0
        for page in pages(partial(self._query, name), schema, None, None, PAGE, [key]):
            for r in page:
                seen += 1
                if seen in cuts:
                    uppers.append(r[key])
        if seen < total:
            self._keys[name] = seen
        if seen < total and self._first_warning(name, "keys"):
            log.warning(
                "Milvus collection %r counts %d rows but %d primary keys: %d rows repeat a "
                "key inserted again (Milvus keeps inserts of a key it holds; its queries and "
                "searches return one row of each, not always the same one: 2.3 scans return the "
                "first, queries by id the latest), so %d records are read and counted",
                name, total, seen, total - seen, seen,
            )  # fmt: skip
        return key_range_partitions(uppers, min(seen, total))

    def _read_schema(self, name: str, schema: CollectionSchema | None) -> CollectionSchema:
        """``schema`` (the caller's view) with the physical layout of the stored collection."""
        stored = self._schema(name)
        physical = {k: v for k, v in stored.engine_settings.items() if k.startswith("milvus.")}
        view = schema or stored
        return view.replace(engine_settings={**view.engine_settings, **physical})

    def scan(
        self,
        name: str,
        partition: Partition,
        resume: ResumeToken | None = None,
        *,
        schema: CollectionSchema | None = None,
        batch_rows: int = 1000,
    ) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
        read = self._read_schema(name, schema)
        after = json.loads(resume)["after"] if resume else partition.spec.get("after")
        upto = partition.spec.get("upto")
        key = pk(read)
        for page in pages(
            partial(self._query, name), read, after, upto, batch_rows, output_fields(read)
        ):
            yield rows_to_batch(page, read), json.dumps({"after": page[-1][key]})

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        read = self._read_schema(name, schema)
        typed = typed_ids(read, ids)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(typed), 1000):
            rows += self._query(
                name, ids_in(read, typed[start : start + 1000]), output_fields(read)
            )
        return rows_to_batch(rows, read)

    # -- writing ---------------------------------------------------------------------------
    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        self._keys.pop(name, None)  # counted again, as written
        schema = self._schema(name)
        if batch.num_rows == 0:
            return
        load = self._bulk.get(name)
        if load is not None:
            load.append(batch)
            return
        batch = keep_last_copies(batch)
        check_ids(name, schema, batch.column("id"), lite=self.lite, version=self.server_version)
        ids = batch.column("id").to_pylist()
        rows = batch_to_rows(name, schema, batch, ids)
        seen = self._inserting.get(name)
        if seen is None:
            self._upsert_rows(name, rows)
        else:
            self._insert_or_upsert(name, seen, id_keys(batch.column("id")), rows)

    def _upsert_rows(self, name: str, rows: list[dict[str, Any]]) -> None:
        self._call(f"{self.uri}: upsert into {name!r}", self.client.upsert, name, rows)

    def _insert_or_upsert(
        self, name: str, seen: SeenKeys, keys: np.ndarray, rows: list[dict[str, Any]]
    ) -> None:
        """Insert the rows whose id this load has not written yet, upsert the others (a
        re-sent batch, an id the source repeats). Milvus Lite's upsert costs grow with
        the collection (100k rows of 384-d: 14 s into an empty one, 32 s after 400k rows;
        insert stays at 12 s), so a copy from empty was quadratic. One write at a time:
        a repeat's upsert must not land before its first copy's insert (two copies)."""
        with self._insert_lock:
            fresh = seen.first_seen(keys).tolist()  # two ids, one key: an upsert, still exact
            new = [r for r, f in zip(rows, fresh, strict=True) if f]
            again = [r for r, f in zip(rows, fresh, strict=True) if not f]
            if new:
                self._call(f"{self.uri}: insert into {name!r}", self.client.insert, name, new)
            if again:
                self._upsert_rows(name, again)

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        self._keys.pop(name, None)
        if name in self._bulk:  # staged rows first, so the delete applies to them too
            self._land(name)
        schema = self._schema(name)
        typed = typed_ids(schema, ids)
        for start in range(0, len(typed), 1000):
            expr = ids_in(schema, typed[start : start + 1000])
            self._call(f"{self.uri}: delete from {name!r}", self.client.delete, name, filter=expr)

    def drop(self, name: str) -> None:
        if self._exists(name):
            self._call(f"{self.uri}: drop {name!r}", self.client.drop_collection, name)
        self._schemas.pop(name, None)
        self._loaded.discard(name)
        self._inserting.pop(name, None)
        self._keys.pop(name, None)
        load = self._bulk.pop(name, None)
        if load is not None:
            load.close()
        if self.config.bulk_dir:
            shutil.rmtree(self._stage(name), ignore_errors=True)

    def begin_bulk_load(self, name: str) -> None:
        """Stage the batches of a copy for a bulk insert at ``finalize`` (``_bulk``): on a
        server, with ``bulk_dir`` given and ``bulk_insert_rows`` > 0, into an empty
        collection vecmigrate laid out. On Milvus Lite, into such a collection, an id's
        first copy is inserted (``_insert_or_upsert``). Otherwise batches are upserted."""
        if self.lite:
            if supports(self._schema(name)) and self.count(name) == 0:
                self._inserting[name] = SeenKeys()
            return
        if not self.config.bulk_dir or self.config.bulk_insert_rows == 0:
            return
        schema = self._schema(name)
        if not supports(schema) or self.count(name) != 0:
            return
        folder = self._stage(name)
        shutil.rmtree(folder, ignore_errors=True)  # a stale stage of a job this one replaces
        lander = self._lander(name, folder)
        self._bulk[name] = BulkLoad(name, schema, folder, lander, self.server_version)

    def _stage(self, name: str) -> Path:
        return stage_dir(str(self.config.bulk_dir), self.uri.path.strip("/"), name)

    def _land(self, name: str) -> None:
        """Land what is staged for ``name``: this process's bulk load, or what a job that
        died left (upserted); nothing when nothing is staged."""
        load = self._bulk.pop(name, None)
        folder = self._stage(name)
        if load is None and not folder.exists():
            return
        lander = load.lander if load is not None else self._lander(name, folder)
        try:
            lander.land(load)
        finally:
            if lander.imported:
                self.bulk_tasks.setdefault(name, []).extend(lander.imported)

    def _lander(self, name: str, folder: Path) -> Lander:
        return Lander(
            name,
            folder,
            using=str(self.client._using),
            call=self._call,
            upsert=partial(self._upsert_rows, name),
            count=partial(self.count, name),
            count_ids=partial(self._count_ids, name),
            refresh=partial(self._refresh, name),
            release=partial(self._release, name),
            threshold=self.config.bulk_insert_rows,
            timeout=self.config.bulk_timeout,
            where=str(self.uri),
            part_rows=self.config.bulk_part_rows,
        )

    def _refresh(self, name: str) -> None:
        """(Re)load ``name`` so that segments a bulk insert added are read (``_bulk``)."""
        if name in self._loaded:
            self._release(name)
        self._call(f"{self.uri}: load {name!r}", self.client.load_collection, name)
        self._loaded.add(name)

    def _release(self, name: str) -> None:
        """Release ``name``: a bulk load's imports go on unseen by query nodes until the
        collection is loaded at ``finalize`` (a read before that loads it again)."""
        self._call(f"{self.uri}: release {name!r}", self.client.release_collection, name)
        self._loaded.discard(name)

    def _count_ids(self, name: str, ids: list[Any]) -> int:
        schema = self._schema(name)
        res = self._query(name, ids_in(schema, typed_ids(schema, ids)), ["count(*)"])
        return int(res[0]["count(*)"]) if res else 0

    def finalize(self, name: str) -> None:
        """Land what is staged for a bulk insert (``_bulk``), then seal the collection's
        growing segments so the server persists and indexes them.

        The seal is not waited for: writes are durable once acknowledged (they are in
        Milvus' log) and strongly consistent reads see them; waiting protects nothing.
        """
        self._inserting.pop(name, None)
        if not self.lite and self.config.bulk_dir:
            self._land(name)
        if not self.lite and self._exists(name):
            self._call(f"{self.uri}: flush {name!r}", self.client.flush, name, _async=True)

    # -- querying --------------------------------------------------------------------------
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
        schema = self._schema(name)
        expr = self._expr(schema, filter)
        field = schema.vector_field(vector_field)
        self._ensure_loaded(name)
        key = pk(schema)
        res = self._call(
            f"{self.uri}: search {name!r}",
            self.client.search,
            name,
            data=list(np.asarray(vectors, dtype=np.float32)),
            limit=k,
            filter=expr,
            anns_field=_frameworks.vector_field(schema, field.name),
            search_params=search_params(field, params, k),
            output_fields=[key],
            consistency_level="Strong",
        )
        ids = [[hit["entity"].get(key, hit.get("id")) for hit in hits] for hits in res]
        scores = [[float(hit["distance"]) for hit in hits] for hits in res]
        return ids, scores


class MilvusLiteConnector(MilvusConnector):
    """Milvus embedded (milvus-lite, a ``.db`` file): FLAT, IVF_FLAT and AUTOINDEX only,
    so other index kinds are substituted and noted; no ``not`` in expressions."""

    schemes = ("milvus-lite",)
    lite = True
    capabilities = MilvusConnector.capabilities.model_copy(update={"index_kinds": _LITE_INDEXES})


__all__ = ["MilvusConnector", "MilvusLiteConnector"]
