"""Which records and which collections a copy, export or import takes (issue #18).

``Selection`` is what the user asked for: at most ``limit`` records, those matching a
portable ``filter``, those with the listed ``ids``; any combination, all of them applying.
``SelectedSource`` is a read-only view of a source that holds only the selected records:
the copy scans it, and the check after the copy digests it, so both judge the same
records. Filters are evaluated on Arrow batches (``filters.evaluate``); ids are read with
``fetch`` in chunks, never by scanning the collection; a limit scans one partition, so
"the first N" is the first N of one scan in scan order.

``choose_collections`` picks collections by name and by glob (``--include/--exclude``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vecmigrate.connectors.base import Connector, Filter, IfExists
from vecmigrate.errors import ConfigError
from vecmigrate.filters import Node, evaluate, operators, parse
from vecmigrate.mapping import MappingSpec, reading_schema
from vecmigrate.model import CollectionSchema, IdType, Metric, Partition, ResumeToken

MISSING_SHOWN = 5  # missing ids named in the warning
IDS_PER_PARTITION = 1000  # fewer ids are not worth a partition of their own


@dataclass(frozen=True)
class Selection:
    """Records to take from each collection: ``limit`` (at most N, the first of one
    scan), ``filter`` (portable filter, see ``vecmigrate.filters``) and ``ids`` (only
    these); ``ids_file`` names where the ids came from, for messages. Empty: everything."""

    limit: int | None = None
    filter: dict[str, Any] | None = None
    ids: tuple[Any, ...] | None = None
    ids_file: str | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and (isinstance(self.limit, bool) or self.limit < 1):
            raise ConfigError(
                f"Selection.limit must be 1 or more, not {self.limit!r}",
                hint="--limit N copies at most N records; leave it out to copy all",
            )
        if self.filter is not None and (not isinstance(self.filter, dict) or not self.filter):
            raise ConfigError(
                f"Selection.filter must be a non-empty object, not {self.filter!r}",
                hint='e.g. --filter \'{"genre": "news"}\'',
            )
        if self.ids is not None:
            # Duplicates would be fetched and counted twice; order is kept (a limit takes
            # the first N in file order).
            object.__setattr__(self, "ids", tuple(dict.fromkeys(self.ids)))

    @property
    def empty(self) -> bool:
        """Nothing selected out: the whole collection."""
        return self.limit is None and self.filter is None and self.ids is None

    def to_json(self) -> dict[str, Any]:
        """JSON form (in results and dry runs): the ids by count, not listed."""
        return {
            "limit": self.limit,
            "filter": self.filter,
            "ids": None if self.ids is None else len(self.ids),
            "ids_file": self.ids_file,
        }

    def describe(self) -> str:
        """One line for people: ``filter {...}, 3 ids from ids.txt, limit 10``."""
        return describe_selection(self.to_json())

    def fingerprint(self) -> str:
        """Stable hash of what is selected (a resumed job must select the same)."""
        ids = None if self.ids is None else [str(i) for i in self.ids]
        text = json.dumps({"limit": self.limit, "filter": self.filter, "ids": ids}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def node(self, schema: CollectionSchema) -> Node | None:
        """The filter parsed against ``schema`` (ConfigError naming the field or operator)."""
        if self.filter is None:
            return None
        try:
            return parse(self.filter, schema)
        except ConfigError as exc:
            raise ConfigError(
                f"--filter on collection {schema.name!r}: {exc.message}",
                hint=exc.hint
                or f"its metadata fields: {', '.join(m.name for m in schema.metadata) or 'none'}",
            ) from None

    def typed_ids(self, schema: CollectionSchema) -> list[Any] | None:
        """The ids as the collection types them (ints for int ids); ConfigError naming
        the first id that is not one."""
        if self.ids is None:
            return None
        if schema.id_type is not IdType.INT:
            return [str(i) for i in self.ids]
        out: list[Any] = []
        for i, value in enumerate(self.ids):
            try:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                out.append(int(value))
            except (TypeError, ValueError):
                where = f" (entry {i + 1} of {self.ids_file})" if self.ids_file else ""
                raise ConfigError(
                    f"id {value!r}{where} is not an integer, and collection {schema.name!r} "
                    "has int ids",
                    hint="list one integer id per line",
                ) from None
        return out

    def check(self, schema: CollectionSchema) -> None:
        """ConfigError when this selection cannot apply to ``schema``."""
        self.node(schema)
        self.typed_ids(schema)


def describe_selection(data: dict[str, Any] | None) -> str:
    """``Selection.describe`` of its JSON form (``to_json``; None: all records)."""
    if not data:
        return "all records"
    parts = []
    if data.get("filter") is not None:
        parts.append(f"filter {json.dumps(data['filter'], sort_keys=True)}")
    if data.get("ids") is not None:
        where = f" from {data['ids_file']}" if data.get("ids_file") else ""
        parts.append(f"{data['ids']:,} ids{where}")
    if data.get("limit") is not None:
        parts.append(f"limit {data['limit']:,}")
    return ", ".join(parts) or "all records"


def read_ids_file(path: str | Path) -> tuple[str, ...]:
    """The ids of an ids file: one per line, surrounding blanks and empty lines ignored."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"ids file {p} does not exist", hint="check the path given to --ids-file"
        ) from None
    except IsADirectoryError:
        raise ConfigError(
            f"ids file {p} is a directory", hint="give --ids-file a file of one id per line"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"ids file {p} is not UTF-8 text", hint="list one id per line, as UTF-8 text"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read ids file {p}: {exc.strerror or exc}",
            hint="check that the file is readable by this user",
        ) from None
    ids = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not ids:
        raise ConfigError(f"ids file {p} lists no ids", hint="list one id per line")
    return ids


def parse_filter_option(text: str) -> dict[str, Any]:
    """The JSON object given to ``--filter`` (ConfigError when it is not one)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--filter is not valid JSON: {exc.msg} (column {exc.colno})",
            hint='e.g. --filter \'{"genre": "news", "year": {"$gte": 2010}}\'',
        ) from None
    if not isinstance(value, dict) or not value:
        raise ConfigError(
            f"--filter takes a non-empty JSON object, not {text!r}",
            hint='e.g. --filter \'{"genre": "news"}\'',
        )
    return value


def choose_collections(
    available: Sequence[str],
    names: Sequence[str] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[str]:
    """The collections to take: ``names`` as given (in order) plus those matching an
    ``include`` glob (every one when there are neither), minus those matching an
    ``exclude`` glob. A glob that matches nothing: ConfigError naming it and listing
    what there is."""
    shown = ", ".join(sorted(available)) or "none"
    for pattern in (*include, *exclude):
        if not fnmatch.filter(available, pattern):
            option = "--include" if pattern in include else "--exclude"
            raise ConfigError(
                f"{option} {pattern!r} matches no collection",
                hint=f"the collections there are: {shown}",
            )
    chosen = list(dict.fromkeys(names))
    if include:
        chosen += [n for n in available if any(fnmatch.fnmatchcase(n, p) for p in include)]
    elif not names:
        chosen = list(available)
    chosen = list(dict.fromkeys(chosen))
    picked = [n for n in chosen if not any(fnmatch.fnmatchcase(n, p) for p in exclude)]
    if not picked:
        raise ConfigError(
            "--exclude leaves no collection to copy", hint=f"the collections there are: {shown}"
        )
    return picked


def _token(data: dict[str, Any]) -> ResumeToken:
    return json.dumps(data, sort_keys=True)


def _order(batch: pa.RecordBatch, ids: Sequence[Any]) -> pa.RecordBatch:
    """``batch`` in the order of ``ids`` (engines return fetched records in any order)."""
    position = {str(v): i for i, v in enumerate(ids)}
    got = [position.get(str(v), len(ids)) for v in batch.column("id").to_pylist()]
    return batch.take(pa.array(np.argsort(np.asarray(got), kind="stable"), pa.int64()))


class SelectedSource(Connector):
    """A read-only view of ``inner`` holding only the records ``selection`` takes of
    collection ``name`` (other collections read as they are), described as ``read_as``
    when given (float64 vectors rounded, as the mapping allows). Counting, scanning and
    fetching go through it, so a copy and the check after it see the same records."""

    schemes = ("selected",)

    def __init__(
        self,
        inner: Connector,
        name: str,
        selection: Selection,
        read_as: CollectionSchema | None = None,
    ) -> None:
        # No Connector.__init__: the view has no URI parameters of its own.
        self.inner, self.name, self.selection = inner, name, selection
        self.uri = inner.uri
        self.config = inner.config
        self._schemas = {}
        self._stated_metrics = {}
        setattr(self, "capabilities", inner.capabilities)  # noqa: B010 - the inner engine's
        schema = read_as or inner.describe(name)
        self.schema = schema
        self.node = selection.node(schema)
        self.ids = selection.typed_ids(schema)
        self._lock = threading.Lock()
        self._found: tuple[int, list[Any]] | None = None  # (ids found, ids missing)

    @property
    def engine(self) -> str:
        """The inner engine's name (messages and mapping notes name the real engine)."""
        return self.inner.engine

    def _mine(self, name: str) -> bool:
        return name == self.name

    # -- discovery ---------------------------------------------------------------------------
    def list_collections(self) -> list[str]:
        return self.inner.list_collections()

    def describe(self, name: str) -> CollectionSchema:
        return self.schema if self._mine(name) else self.inner.describe(name)

    def _expressible(self) -> bool:
        """The inner engine counts this filter itself."""
        return self.node is not None and operators(self.node) <= self.capabilities.filter_ops

    def planned_total(self) -> int:
        """The records the selection takes, as cheaply as known: exact when the engine
        counts the filter (or there is none), else an upper bound (no full scan)."""
        total = None
        if self.ids is not None:
            total = len(self.ids)
        elif self._expressible():
            total = self._engine_count()
        if total is None:
            total = self.inner.count(self.name)
        return total if self.selection.limit is None else min(total, self.selection.limit)

    def _engine_count(self) -> int | None:
        """The engine's own count of the filter; None when it cannot compile this one
        (its operators are listed, but not every value or field type they take)."""
        try:
            return self.inner.count(self.name, self.selection.filter)
        except ConfigError:
            return None

    def count(self, name: str, filter: Filter | None = None) -> int:
        if not self._mine(name):
            return self.inner.count(name, filter)
        if filter is None and self.ids is None and (self.node is None or self._expressible()):
            got = self.inner.count(name) if self.node is None else self._engine_count()
            if got is not None:
                return got if self.selection.limit is None else min(got, self.selection.limit)
        extra = parse(filter, self.schema) if filter else None
        n = 0
        for part in self.partitions(name, 1):
            for batch, _ in self.scan(name, part, schema=self.schema, batch_rows=5000):
                n += int(evaluate(extra, batch).sum()) if extra is not None else batch.num_rows
        return n

    def missing_ids(self) -> tuple[int, list[Any]]:
        """How many of the selection's ids the collection holds, and those it does not
        (read with ``fetch`` in chunks; computed once)."""
        with self._lock:
            if self._found is not None:
                return self._found
        assert self.ids is not None
        present: set[str] = set()
        for start in range(0, len(self.ids), 1000):
            chunk = self.ids[start : start + 1000]
            got = self.inner.fetch(self.name, chunk, schema=self.schema)
            present.update(str(v) for v in got.column("id").to_pylist())
        missing = [i for i in self.ids if str(i) not in present]
        with self._lock:
            self._found = (len(self.ids) - len(missing), missing)
            return self._found

    # -- reading -----------------------------------------------------------------------------
    def partitions(self, name: str, n: int) -> list[Partition]:
        if not self._mine(name):
            return self.inner.partitions(name, n)
        if self.ids is not None:
            # Contiguous ranges of the id list; one when a limit needs one order.
            chunks = -(-len(self.ids) // IDS_PER_PARTITION)
            k = 1 if self.selection.limit is not None else max(1, min(n, chunks))
            step = -(-len(self.ids) // k)
            return [
                Partition(
                    id=f"ids-{i}",
                    spec={"selected_ids": [start, min(start + step, len(self.ids))]},
                    estimated_rows=min(step, len(self.ids) - start),
                )
                for i, start in enumerate(range(0, len(self.ids), step))
            ]
        return self.inner.partitions(name, 1 if self.selection.limit is not None else n)

    def _keep(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if self.node is None or batch.num_rows == 0:
            return batch
        return batch.filter(pa.array(evaluate(self.node, batch)))

    def scan(
        self,
        name: str,
        partition: Partition,
        resume: ResumeToken | None = None,
        *,
        schema: CollectionSchema | None = None,
        batch_rows: int = 1000,
    ) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
        if not self._mine(name):
            yield from self.inner.scan(
                name, partition, resume, schema=schema, batch_rows=batch_rows
            )
            return
        schema = schema or self.schema
        limit = self.selection.limit
        if self.ids is not None:
            yield from self._scan_ids(partition, resume, schema, batch_rows, limit)
            return
        if limit is None:  # the inner scan's own tokens: nothing of ours to remember
            for batch, token in self.inner.scan(
                name, partition, resume, schema=schema, batch_rows=batch_rows
            ):
                kept = self._keep(batch)
                if kept.num_rows:
                    yield kept, token
            return
        state: dict[str, Any] = json.loads(resume) if resume else {"inner": None, "taken": 0}
        taken = int(state["taken"])
        if taken >= limit:
            return
        for batch, token in self.inner.scan(
            name, partition, state["inner"], schema=schema, batch_rows=batch_rows
        ):
            kept = self._keep(batch)
            kept = kept.slice(0, limit - taken)
            taken += kept.num_rows
            if kept.num_rows:
                yield kept, _token({"inner": token, "taken": taken})
            if taken >= limit:
                return

    def _scan_ids(
        self,
        partition: Partition,
        resume: ResumeToken | None,
        schema: CollectionSchema,
        batch_rows: int,
        limit: int | None,
    ) -> Iterator[tuple[pa.RecordBatch, ResumeToken]]:
        assert self.ids is not None
        start, end = partition.spec["selected_ids"]
        state = json.loads(resume) if resume else {"pos": start, "taken": 0}
        pos, taken = int(state["pos"]), int(state["taken"])
        while pos < end and (limit is None or taken < limit):
            chunk = self.ids[pos : min(pos + batch_rows, end)]
            pos += len(chunk)
            got = self._keep(_order(self.inner.fetch(self.name, chunk, schema=schema), chunk))
            if limit is not None:
                got = got.slice(0, limit - taken)
            taken += got.num_rows
            if got.num_rows:
                yield got, _token({"pos": pos, "taken": taken})

    def fetch(
        self, name: str, ids: Sequence[Any], *, schema: CollectionSchema | None = None
    ) -> pa.RecordBatch:
        batch = self.inner.fetch(name, ids, schema=schema)
        if not self._mine(name):
            return batch
        batch = self._keep(batch)
        if self.ids is not None and batch.num_rows:
            wanted = {str(i) for i in self.ids}
            keep = [str(v) in wanted for v in batch.column("id").to_pylist()]
            batch = batch.filter(pa.array(keep, pa.bool_()))
        return batch

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
        if self._mine(name) and not self.selection.empty:
            raise ConfigError(f"a selection of {name!r} cannot be searched; search the source")
        # Every record (the view only reads them as another schema): the engine's search.
        return self.inner.search(
            name, vectors, k, filter=filter, params=params, vector_field=vector_field
        )

    def state_metric(self, name: str, field: str, metric: Metric) -> None:
        self.inner.state_metric(name, field, metric)  # the inner engine searches

    def unfilterable(self, schema: CollectionSchema) -> frozenset[str]:
        return self.inner.unfilterable(schema)

    # -- a view is never written -------------------------------------------------------------
    def _read_only(self, name: str) -> ConfigError:
        return ConfigError(f"the selection of {self.name!r} is read-only (writing {name!r})")

    def create(self, schema: CollectionSchema, if_exists: IfExists = "fail") -> None:
        raise self._read_only(schema.name)

    def upsert(self, name: str, batch: pa.RecordBatch) -> None:
        raise self._read_only(name)

    def delete(self, name: str, ids: Sequence[Any]) -> None:
        raise self._read_only(name)

    def drop(self, name: str) -> None:
        raise self._read_only(name)

    def collection_location(self, name: str) -> str | None:
        return self.inner.collection_location(name)

    def at_rest_key(self) -> bytes | None:
        return self.inner.at_rest_key()

    def close(self) -> None:
        """The view does not own ``inner``: closing it leaves ``inner`` open."""

    def __repr__(self) -> str:
        return f"SelectedSource({self.inner!r}, {self.name!r}, {self.selection.describe()})"


def select(
    source: Connector,
    name: str,
    selection: Selection | None,
    read_as: CollectionSchema | None = None,
) -> Connector:
    """``source`` itself, or a ``SelectedSource`` view of it when something is selected or
    collection ``name`` is to be read ``read_as`` another schema than it describes."""
    if (selection is None or selection.empty) and read_as is None:
        return source
    return SelectedSource(source, name, selection or Selection(), read_as)


def select_reading(
    source: Connector, name: str, selection: Selection | None, spec: MappingSpec | None
) -> tuple[Connector, CollectionSchema]:
    """``select``, reading collection ``name`` as the mapping ``spec`` lets a copy read it
    (``reading_schema``: float64 vectors rounded), and that schema; described once."""
    described = source.describe(name)
    reading = reading_schema(described, spec)
    view = select(source, name, selection, None if reading is described else reading)
    return view, reading


__all__ = [
    "SelectedSource",
    "Selection",
    "choose_collections",
    "describe_selection",
    "parse_filter_option",
    "read_ids_file",
    "select",
    "select_reading",
]
