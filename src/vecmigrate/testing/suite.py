"""The shared conformance suite. A connector is done when its subclass passes all of it.

Subclass ``ConnectorConformance`` and provide a ``connector`` fixture (an open connector
on a real engine) and, optionally, ``other_connector`` for a second, independent store
used by the dump round trip. Capability flags skip a case visibly, never silently.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from vecmigrate.connectors import Connector, connect
from vecmigrate.errors import ConfigError, VecmigrateError
from vecmigrate.exact import exact_topk
from vecmigrate.filters import evaluate, operators, parse
from vecmigrate.model import CollectionSchema, IdType, Metric
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.records import metadata_rows, vectors_to_numpy
from vecmigrate.testing.data import (
    FILTER_MATRIX,
    NAMESPACES,
    ROWS,
    rich_batch,
    rich_schema,
    sample_batch,
    sample_ids,
    sample_metadata,
    sample_schema,
)
from vecmigrate.testing.safety import SafetyConformance
from vecmigrate.verify.digest import collection_digest


def _normalise(m: np.ndarray) -> np.ndarray:
    unit: np.ndarray = m / np.linalg.norm(m, axis=1, keepdims=True)
    return unit


def _scan_all(conn: Connector, name: str, n: int = 1, batch_rows: int = 50) -> pa.Table:
    schema = conn.describe(name)
    batches = [
        b
        for p in conn.partitions(name, n)
        for b, _ in conn.scan(name, p, schema=schema, batch_rows=batch_rows)
    ]
    return pa.Table.from_batches(batches, schema=schema.arrow_schema())


class ConnectorConformance(SafetyConformance):
    """Same data, same assertions, for every engine."""

    id_type: IdType = IdType.STRING

    @pytest.fixture
    def connector(self) -> Iterator[Connector]:
        raise NotImplementedError("subclasses provide a connector on a real engine")

    @pytest.fixture
    def name(self, connector: Connector) -> Iterator[str]:
        name = f"conf_{uuid.uuid4().hex[:10]}"
        yield name
        connector.drop(name)

    @pytest.fixture
    def schema(self, connector: Connector, name: str) -> CollectionSchema:
        if self.id_type not in connector.capabilities.id_types:
            pytest.skip(f"{connector.engine} cannot store {self.id_type.value} ids")
        return sample_schema(name, id_type=self.id_type)

    @pytest.fixture
    def loaded(self, connector: Connector, schema: CollectionSchema) -> CollectionSchema:
        connector.create(schema)
        connector.upsert(schema.name, sample_batch(schema))
        connector.finalize(schema.name)
        return schema

    @pytest.fixture
    def mutable(self, connector: Connector) -> None:
        if not connector.capabilities.mutable:
            pytest.skip(f"{connector.engine} is append-only (capabilities.mutable=False)")

    # -- schema --------------------------------------------------------------------------
    def test_describe_round_trips_schema(
        self, connector: Connector, loaded: CollectionSchema
    ) -> None:
        got = connector.describe(loaded.name)
        assert got.name == loaded.name
        assert got.id_type == loaded.id_type
        assert got.has_document
        assert got.vector.dim == loaded.vector.dim
        assert got.vector.metric == loaded.vector.metric
        assert {(m.name, m.type) for m in got.metadata} == {
            (m.name, m.type) for m in loaded.metadata
        }
        assert loaded.name in connector.list_collections()

    def test_create_if_exists(self, connector: Connector, loaded: CollectionSchema) -> None:
        with pytest.raises(VecmigrateError):
            connector.create(loaded, if_exists="fail")
        connector.create(loaded, if_exists="reuse")
        assert connector.count(loaded.name) == ROWS
        connector.create(loaded, if_exists="replace")
        connector.finalize(loaded.name)
        assert connector.count(loaded.name) == 0

    def test_metric_dot_and_l2(self, connector: Connector, name: str) -> None:
        for metric in (Metric.DOT, Metric.L2):
            if metric not in connector.capabilities.metrics:
                pytest.skip(f"{connector.engine} has no {metric.value} metric")
            schema = sample_schema(f"{name}_{metric.value}", id_type=self.id_type, metric=metric)
            connector.create(schema)
            try:
                assert connector.describe(schema.name).vector.metric == metric
            finally:
                connector.drop(schema.name)

    # -- reading -------------------------------------------------------------------------
    def test_count(self, connector: Connector, loaded: CollectionSchema) -> None:
        assert connector.count(loaded.name) == ROWS

    @pytest.mark.parametrize("n", [1, 3, 8])
    def test_partitions_cover_every_row_once(
        self, connector: Connector, loaded: CollectionSchema, n: int
    ) -> None:
        parts = connector.partitions(loaded.name, n)
        assert 1 <= len(parts) <= n
        ids = _scan_all(connector, loaded.name, n=n, batch_rows=37).column("id").to_pylist()
        assert len(ids) == ROWS
        assert sorted(map(str, ids)) == sorted(map(str, sample_ids(self.id_type)))

    def test_resume_continues_without_loss_or_duplicates(
        self, connector: Connector, loaded: CollectionSchema
    ) -> None:
        part = connector.partitions(loaded.name, 1)[0]
        first: list[Any] = []
        token = None
        for i, (batch, tok) in enumerate(
            connector.scan(loaded.name, part, schema=loaded, batch_rows=30)
        ):
            first += batch.column("id").to_pylist()
            token = tok
            if i == 2:
                break
        assert token is not None and len(first) == 90
        rest = [
            x
            for b, _ in connector.scan(
                loaded.name, part, resume=token, schema=loaded, batch_rows=30
            )
            for x in b.column("id").to_pylist()
        ]
        assert len(first) + len(rest) == ROWS
        assert set(first).isdisjoint(rest)
        assert sorted(map(str, first + rest)) == sorted(map(str, sample_ids(self.id_type)))

    def test_vectors_round_trip_within_tolerance(
        self, connector: Connector, loaded: CollectionSchema
    ) -> None:
        table = _scan_all(connector, loaded.name).sort_by("id")
        got = vectors_to_numpy(table.column("vector"))
        expected_batch = sample_batch(loaded)
        order = np.argsort(np.array(expected_batch.column("id").to_pylist(), dtype=object))
        want = vectors_to_numpy(expected_batch.column("vector"))[order]
        if connector.capabilities.normalizes_cosine:
            got, want = _normalise(got), _normalise(want)
        tol = max(connector.capabilities.vector_tolerance, 1e-7)
        assert np.max(np.abs(got - want)) <= tol
        assert got.dtype == np.float32

    def test_documents_and_metadata_round_trip(
        self, connector: Connector, loaded: CollectionSchema
    ) -> None:
        table = _scan_all(connector, loaded.name)
        by_id = {}
        batch = table.combine_chunks().to_batches()[0]
        for rid, doc, meta in zip(
            batch.column("id").to_pylist(),
            batch.column("document").to_pylist(),
            metadata_rows(batch, loaded),
            strict=True,
        ):
            by_id[rid] = (doc, meta)
        for i, (rid, meta) in enumerate(
            zip(sample_ids(self.id_type), sample_metadata(), strict=True)
        ):
            doc, got = by_id[rid]
            assert doc == f"document number {i} about {meta['genre']}"
            assert got == meta, f"id {rid}"
            for key, value in meta.items():
                assert type(got[key]) is type(value), f"id {rid} field {key}"

    def test_fetch_by_ids(self, connector: Connector, loaded: CollectionSchema) -> None:
        ids = sample_ids(self.id_type)
        wanted = [ids[3], ids[17], ids[200]]
        missing = 999_999 if self.id_type is IdType.INT else "no-such-id"
        got = connector.fetch(loaded.name, [*wanted, missing], schema=loaded)
        assert sorted(map(str, got.column("id").to_pylist())) == sorted(map(str, wanted))

    # -- writing -------------------------------------------------------------------------
    @pytest.mark.usefixtures("mutable")
    def test_upsert_twice_updates_by_id(
        self, connector: Connector, loaded: CollectionSchema
    ) -> None:
        batch = sample_batch(loaded, seed=99).slice(0, 20)
        docs = pa.array([f"updated {i}" for i in range(20)])
        batch = batch.set_column(batch.schema.get_field_index("document"), "document", docs)
        connector.upsert(loaded.name, batch)
        connector.upsert(loaded.name, batch)
        assert connector.count(loaded.name) == ROWS
        got = connector.fetch(loaded.name, batch.column("id").to_pylist(), schema=loaded)
        assert sorted(got.column("document").to_pylist()) == sorted(docs.to_pylist())

    def test_a_table_of_chunks_is_written_as_one_piece_in_a_bulk_load(
        self, connector: Connector, schema: CollectionSchema
    ) -> None:
        """What a copy's bulk writer sends (``upsert_table``: its source batches as the
        chunks of one table, never concatenated) lands as exactly those records."""
        connector.create(schema)
        connector.begin_bulk_load(schema.name)
        batch = sample_batch(schema)
        chunks = [batch.slice(0, 7), batch.slice(7, 150), batch.slice(157)]
        connector.upsert_table(schema.name, pa.Table.from_batches(chunks))
        connector.finalize(schema.name)
        assert connector.count(schema.name) == ROWS
        table = _scan_all(connector, schema.name)
        assert sorted(map(str, table.column("id").to_pylist())) == sorted(
            map(str, batch.column("id").to_pylist())
        )
        docs = {r["id"]: r["document"] for r in table.select(["id", "document"]).to_pylist()}
        want = {r["id"]: r["document"] for r in batch.select(["id", "document"]).to_pylist()}
        assert docs == want

    def test_a_stream_of_batches_is_written_whole_in_a_bulk_load(
        self, connector: Connector, schema: CollectionSchema
    ) -> None:
        """What a copy streams into a target (``upsert_stream``: batches consumed as the
        engine writes, one of them re-sent as after a failed write) lands as exactly those
        records."""
        connector.create(schema)
        connector.begin_bulk_load(schema.name)
        batch = sample_batch(schema)
        consumed: list[int] = []

        def batches() -> Iterator[pa.RecordBatch]:
            for start, stop in ((0, 7), (7, 157), (7, 157), (157, ROWS)):
                consumed.append(start)
                yield batch.slice(start, stop - start)

        connector.upsert_stream(schema.name, batches())
        assert consumed == [0, 7, 7, 157]  # every batch taken before it returned
        connector.finalize(schema.name)
        assert connector.count(schema.name) == ROWS
        table = _scan_all(connector, schema.name)
        docs = {r["id"]: r["document"] for r in table.select(["id", "document"]).to_pylist()}
        want = {r["id"]: r["document"] for r in batch.select(["id", "document"]).to_pylist()}
        assert docs == want

    def test_an_id_repeated_in_one_batch_is_stored_once_as_its_last_copy(
        self, connector: Connector, loaded: CollectionSchema
    ) -> None:
        """A source may repeat an id (a file can). A write holding an id twice either keeps
        its last copy, as across writes, or is refused whole (the pipeline then writes its
        rows one at a time): never both copies (Milvus 2.3 and FAISS kept both)."""
        rows = sample_batch(loaded, seed=98).slice(0, 2)
        docs = pa.array(["repeated, first copy", "other"])
        rows = rows.set_column(rows.schema.get_field_index("document"), "document", docs)
        last = rows.slice(0, 1)
        last = last.set_column(
            last.schema.get_field_index("document"), "document", pa.array(["last copy"])
        )
        batch = pa.Table.from_batches([rows, last]).combine_chunks().to_batches()[0]
        try:
            connector.upsert(loaded.name, batch)
            connector.finalize(loaded.name)
        except VecmigrateError:
            assert connector.count(loaded.name) == ROWS  # refused whole: nothing written
            return
        assert connector.count(loaded.name) == ROWS
        repeated = batch.column("id")[0].as_py()
        got = connector.fetch(loaded.name, [repeated], schema=loaded)
        assert got.column("document").to_pylist() == ["last copy"]

    @pytest.mark.usefixtures("mutable")
    def test_delete(self, connector: Connector, loaded: CollectionSchema) -> None:
        ids = sample_ids(self.id_type)
        connector.delete(loaded.name, ids[:10])
        assert connector.count(loaded.name) == ROWS - 10
        missing = [10**9] if self.id_type is IdType.INT else ["never-existed"]
        connector.delete(loaded.name, missing)
        connector.delete(loaded.name, ids[:10])
        assert connector.count(loaded.name) == ROWS - 10

    # -- querying ------------------------------------------------------------------------
    def test_search_agrees_with_exact(self, connector: Connector, loaded: CollectionSchema) -> None:
        batch = sample_batch(loaded)
        corpus = _normalise(vectors_to_numpy(batch.column("vector")))
        ids = batch.column("id").to_pylist()
        queries = corpus[:20] + 0.01
        got_ids, scores = connector.search(loaded.name, queries, 10)
        exact = np.argsort(-(_normalise(queries) @ corpus.T), axis=1)[:, :10]
        hits = sum(len({ids[j] for j in exact[q]} & set(got_ids[q])) for q in range(len(queries)))
        assert hits / (10 * len(queries)) >= 0.9
        assert all(len(s) == 10 for s in scores)

    def test_search_records_returns_the_hits_records(
        self, connector: Connector, loaded: CollectionSchema
    ) -> None:
        batch = sample_batch(loaded)
        queries = vectors_to_numpy(batch.column("vector"))[:5] + 0.01
        ids, scores = connector.search(loaded.name, queries, 5)
        got_ids, got_scores, records = connector.search_records(loaded.name, queries, 5)
        assert got_ids == ids
        assert np.allclose(np.asarray(got_scores), np.asarray(scores), atol=1e-4)
        every = list(dict.fromkeys(i for row in ids for i in row))
        assert sorted(records.column("id").to_pylist()) == sorted(every)
        fetched = pa.Table.from_batches([connector.fetch(loaded.name, every)]).sort_by("id")
        got = pa.Table.from_batches([records]).sort_by("id")
        assert got.column("document").to_pylist() == fetched.column("document").to_pylist()

    # -- beyond one vector per row ---------------------------------------------------------
    def _rich_round_trip(
        self, connector: Connector, name: str, **features: bool
    ) -> tuple[CollectionSchema, pa.Table, pa.RecordBatch]:
        if self.id_type not in connector.capabilities.id_types:
            pytest.skip(f"{connector.engine} cannot store {self.id_type.value} ids")
        schema = rich_schema(name, id_type=self.id_type, **features)
        connector.create(schema)
        batch = rich_batch(schema)
        connector.upsert(name, batch)
        connector.finalize(name)
        got = _scan_all(connector, name, n=2).sort_by("id")
        want = pa.Table.from_batches([batch]).sort_by("id")
        assert got.column("id").to_pylist() == want.column("id").to_pylist()
        return connector.describe(name), got, batch

    def test_named_vectors_round_trip_and_are_searchable(
        self, connector: Connector, name: str
    ) -> None:
        if not connector.capabilities.named_vectors:
            pytest.skip(f"{connector.engine} stores one vector per record")
        described, got, batch = self._rich_round_trip(connector, name, named=True)
        assert [(v.name, v.dim) for v in described.vectors] == [("vector", 16), ("title", 8)]
        want = pa.Table.from_batches([batch]).sort_by("id")
        tol = max(connector.capabilities.vector_tolerance, 1e-7)
        for field in ("vector", "title"):
            a, b = vectors_to_numpy(got.column(field)), vectors_to_numpy(want.column(field))
            if connector.capabilities.normalizes_cosine:
                a, b = _normalise(a), _normalise(b)
            assert np.max(np.abs(a - b)) <= tol, field
        titles = vectors_to_numpy(batch.column("title"))
        ids = batch.column("id").to_pylist()
        hit_ids, _ = connector.search(name, titles[[4, 9]], 1, vector_field="title")
        assert [h[0] for h in hit_ids] == [ids[4], ids[9]]

    def test_namespaces_round_trip(self, connector: Connector, name: str) -> None:
        if not connector.capabilities.namespaces:
            pytest.skip(f"{connector.engine} has no namespaces/tenants")
        described, got, batch = self._rich_round_trip(connector, name, namespaces=True)
        assert set(described.namespaces or ()) == set(NAMESPACES)
        want = pa.Table.from_batches([batch]).sort_by("id")
        assert got.column("namespace").to_pylist() == want.column("namespace").to_pylist()

    def test_sparse_vectors_round_trip(self, connector: Connector, name: str) -> None:
        if not connector.capabilities.sparse_vectors:
            pytest.skip(f"{connector.engine} has no sparse vectors")
        described, got, batch = self._rich_round_trip(connector, name, sparse=True)
        assert [s.name for s in described.sparse] == ["keywords"]
        want = pa.Table.from_batches([batch]).sort_by("id")
        assert got.column("keywords").to_pylist() == want.column("keywords").to_pylist()

    # -- filters ---------------------------------------------------------------------------
    @pytest.mark.parametrize("flt", FILTER_MATRIX, ids=[str(f) for f in FILTER_MATRIX])
    def test_filter_matrix_matches_exact_evaluation(
        self, connector: Connector, loaded: CollectionSchema, flt: dict[str, Any]
    ) -> None:
        node = parse(flt, loaded)
        if not operators(node) <= connector.capabilities.filter_ops:
            with pytest.raises(ConfigError, match="cannot express"):
                connector.count(loaded.name, flt)
            pytest.skip(f"{connector.engine} declares it cannot express {sorted(operators(node))}")
        batch = sample_batch(loaded)
        mask = evaluate(node, batch)
        assert connector.count(loaded.name, flt) == int(mask.sum())
        # Filtered top-k against exact filtered kNN: nothing outside the filter, same ids.
        corpus = vectors_to_numpy(batch.column("vector"))
        queries = corpus[:3] + 0.05
        got, _ = connector.search(loaded.name, queries, 5, filter=flt)
        allowed_ids = [i for i, m in zip(batch.column("id").to_pylist(), mask, strict=True) if m]
        truth = exact_topk([(allowed_ids, corpus[mask])], queries, 5, loaded.vector.metric)
        allowed = set(allowed_ids)
        for q in range(len(queries)):
            assert set(got[q]) <= allowed, f"filter violation for {flt}"
            assert len(got[q]) == len(truth.ids[q])
            assert len(set(got[q]) & set(truth.ids[q])) >= len(truth.ids[q]) - 1

    def test_filter_values_are_escaped(self, connector: Connector, name: str) -> None:
        if "$eq" not in connector.capabilities.filter_ops:
            pytest.skip(f"{connector.engine} has no filters")
        schema = sample_schema(name, id_type=self.id_type)
        connector.create(schema)
        batch = sample_batch(schema).slice(0, 3)
        meta = batch.column("metadata").to_pylist()
        nasty = ['O\'Brien "q" \\', "x') OR 1=1 --", "news"]
        for m, v in zip(meta, nasty, strict=True):
            m["genre"] = v
        batch = batch.set_column(
            batch.schema.get_field_index("metadata"),
            "metadata",
            pa.array(meta, type=batch.schema.field("metadata").type),
        )
        connector.upsert(name, batch)
        connector.finalize(name)
        for v in nasty:
            assert connector.count(name, {"genre": v}) == 1, v
        assert connector.count(name, {"genre": "x"}) == 0

    # -- end to end ------------------------------------------------------------------------
    def test_export_dump_import_gives_equal_digests(
        self, connector: Connector, loaded: CollectionSchema, tmp_path: Path
    ) -> None:
        dump = connect(f"dump://{tmp_path / 'dump'}")
        opts = CopyOptions(workers=2, batch_rows=64, job_path=tmp_path / "export.sqlite")
        exported = copy_collection(connector, dump, loaded.name, options=opts)
        assert exported.rows_written == ROWS and exported.dead_letters == 0
        restored = f"{loaded.name}_r"
        try:
            opts = CopyOptions(workers=2, batch_rows=50, job_path=tmp_path / "import.sqlite")
            imported = copy_collection(
                dump, connector, loaded.name, target_collection=restored, options=opts
            )
            assert imported.rows_written == ROWS
            tol = connector.capabilities.vector_tolerance
            a = collection_digest(connector, loaded.name)
            b = collection_digest(dump, loaded.name)
            c = collection_digest(connector, restored)
            assert a.compare(b, tolerance=tol).equal
            assert a.compare(c, tolerance=tol).equal
        finally:
            connector.drop(restored)
