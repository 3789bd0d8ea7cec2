"""Write tests/data/minilm-600.parquet: 600 real MiniLM embeddings the tests use.

The tests must not need torch, so the real-embedding fixture is generated once with
``scripts/corpus.py`` and committed. Rerun after changing the corpus: ``python
scripts/make_test_embeddings.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import cached_embeddings, metadata_for

ROWS = 600
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / f"minilm-{ROWS}.parquet"


def main() -> None:
    items, vectors = cached_embeddings(ROWS)
    table = pa.table(
        {
            "id": [f"doc-{i:04d}" for i in range(ROWS)],
            "document": [t for _, t in items],
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(vectors.reshape(-1)), vectors.shape[1]
            ),
            "metadata": pa.array([metadata_for(i, *items[i]) for i in range(ROWS)]),
        }
    )
    pq.write_table(table, OUT, compression="zstd")
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
