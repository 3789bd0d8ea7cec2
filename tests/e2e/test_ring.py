"""One real-embedding collection copied around a ring of engines through the CLI; the
last copy's digest equals the first's (Qdrant in local mode; the rest real engines:
Chroma, milvus-lite, Milvus 2.3 standalone, Redis Stack, PostgreSQL, LanceDB, FAISS,
sqlite-vec, a dump)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from tests.e2e.helpers import json_of, run_cli
from tests.e2e.test_verify_cli import _chroma_source
from vecmigrate.connectors import connect
from vecmigrate.verify.digest import collection_digest


def test_ring_of_engines_ends_with_the_digest_it_started_with(
    tmp_path: Path, postgres: Any, milvus_server: Any, redis_server: Any
) -> None:
    ring = [
        _chroma_source(tmp_path / "chroma"),
        f"milvus-lite://{tmp_path / 'milvus.db'}",
        milvus_server.uri,
        f"qdrant+local://{tmp_path / 'qdrant'}",
        redis_server.uri,
        postgres.uri(),
        f"lancedb://{tmp_path / 'lance'}",
        f"faiss://{tmp_path / 'faiss'}",
        f"sqlite-vec://{tmp_path / 'vec.db'}",
        f"dump://{tmp_path / 'dump'}",
    ]
    for n, (src, dst) in enumerate(itertools.pairwise(ring)):
        out = run_cli(
            "copy",
            src,
            dst,
            "-c",
            "docs",
            "--if-exists",
            "replace",
            "--yes",
            "--job",
            f"j{n}.sqlite",
            "--json",
            cwd=tmp_path,
        )
        assert out.returncode == 0, f"{src} -> {dst}: {out.stderr}{out.stdout[-2000:]}"
        result = json_of(out)
        assert result["rows_written"] == 600 and result["verified"], result["checks"]
    with connect(ring[0]) as first, connect(ring[-1]) as last:
        tolerance = max(first.capabilities.vector_tolerance, 1e-6)
        assert (
            collection_digest(first, "docs")
            .compare(collection_digest(last, "docs"), tolerance=tolerance)
            .equal
        )
