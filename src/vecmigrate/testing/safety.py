"""Conformance cases for safety, run on every engine: reading never changes storage, and
``create(..., if_exists="replace")`` with a schema the engine cannot hold drops nothing."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pytest

from vecmigrate.connectors import Connector, scheme_info
from vecmigrate.errors import ConfigError
from vecmigrate.model import CollectionSchema, IdType, Metric, SparseField, VectorField
from vecmigrate.pipeline.dryrun import plan_migration
from vecmigrate.records import vectors_to_numpy
from vecmigrate.testing.data import ROWS
from vecmigrate.verify.diff import diff_collections
from vecmigrate.verify.digest import collection_digest
from vecmigrate.verify.gates import VerifyConfig
from vecmigrate.verify.run import verify_migration


def _files_hash(root: Path) -> str:
    """sha256 of the names and bytes of every file under ``root`` (or of ``root``)."""
    h = hashlib.sha256()
    for p in sorted(p for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file()):
        try:
            data = p.read_bytes()
        except FileNotFoundError:  # renamed or removed since the walk listed it
            continue
        h.update(str(p.relative_to(root.parent)).encode() + b"\0" + data)
    return h.hexdigest()


def storage_fingerprint(conn: Connector, contents_of: Collection[str] | None = None) -> str:
    """Bytes of every file of a local store; for a server, what a client can see of it
    (collections, schemas, counts, and the content digests of ``contents_of``: all
    collections when None; a server shared by many tests holds many)."""
    h = hashlib.sha256()
    if scheme_info(conn.uri.scheme).storage == "path":
        # An engine's own housekeeping may be under way (Qdrant Edge writes its next WAL
        # segment as tmp-open-N, then renames it): the files once two walks agree.
        root, last = conn.uri.local_path, ""
        for _ in range(20):
            now = _files_hash(root)
            if now == last:
                break
            last = now
            time.sleep(0.05)
        return last
    for name in sorted(conn.list_collections()):
        try:
            schema = conn.describe(name)
        except ConfigError as exc:
            # a table another tool made that is read only once the user names its
            # columns: what a client sees of it is that refusal (it names the columns)
            h.update(f"{name}: {exc}".encode())
            continue
        h.update(schema.to_json().encode())
        h.update(str(conn.count(name)).encode())
        if contents_of is None or name in contents_of:
            try:
                digest = collection_digest(conn, name).content_hash
            except ConfigError as exc:  # an id column that cannot key it: refused, as above
                digest = str(exc)
            h.update(digest.encode())
    return h.hexdigest()


def unholdable_schema(conn: Connector, like: CollectionSchema) -> CollectionSchema | None:
    """``like`` changed in one way the engine declares it cannot store (None: it can
    store everything the portable model expresses)."""
    caps = conn.capabilities
    missing_metric = next((m for m in Metric if m not in caps.metrics), None)
    if missing_metric is not None:
        vec = like.vector.model_copy(update={"metric": missing_metric})
        return like.replace(vectors=(vec,))
    missing_id = next((i for i in IdType if i not in caps.id_types), None)
    if missing_id is not None:
        return like.replace(id_type=missing_id)
    if not caps.named_vectors:
        return like.replace(vectors=(*like.vectors, VectorField(name="second", dim=4)))
    if not caps.sparse_vectors:
        return like.replace(sparse=(SparseField(name="sparse"),))
    if not caps.namespaces:
        return like.replace(namespaces=("a",))
    return None


class SafetyConformance:
    """Mixed into ``ConnectorConformance``; uses its ``connector`` and ``loaded`` fixtures."""

    def test_replace_with_an_unholdable_schema_drops_nothing(
        self, connector: Connector, loaded: CollectionSchema
    ) -> None:
        bad = unholdable_schema(connector, loaded)
        if bad is None:
            pytest.skip(f"{connector.engine} can store every schema the portable model expresses")
        with pytest.raises(ConfigError):
            connector.create(bad, if_exists="replace")
        assert connector.count(loaded.name) == ROWS
        assert connector.describe(loaded.name).vector.metric == loaded.vector.metric

    def test_read_only_verbs_leave_storage_unchanged(
        self, connector: Connector, loaded: CollectionSchema, tmp_path: Path
    ) -> None:
        name = loaded.name
        before = storage_fingerprint(connector, contents_of={name})
        connector.list_collections()
        schema = connector.describe(name)
        connector.count(name)
        for part in connector.partitions(name, 2):
            batches = [b for b, _ in connector.scan(name, part, schema=schema, batch_rows=64)]
        ids = batches[0].column("id").to_pylist()[:5]
        connector.fetch(name, ids)
        queries = vectors_to_numpy(batches[0].column("vector"))[:3]
        connector.search(name, np.ascontiguousarray(queries), 5)
        assert diff_collections(connector, connector, name).equal
        # what is asked, not how much: a few queries (each is a round trip on a server)
        few = VerifyConfig(queries=20, filter_queries=5, namespace_queries=5)
        verify_migration(connector, connector, name, config=few)
        plan_migration(connector, connector, name, target_name=f"{name}_planned")
        assert storage_fingerprint(connector, contents_of={name}) == before
        assert f"{name}_planned" not in connector.list_collections()
