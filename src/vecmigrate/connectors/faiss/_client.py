"""FAISS calls for ``connectors/faiss``: the error mapping, and index files built, read
back and written atomically. The connector keeps the caches and the sidecar logic."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa

from vecmigrate.connectors.files import os_error
from vecmigrate.errors import DataError, TerminalError, VecmigrateError
from vecmigrate.model import IndexSpec, Metric, VectorField

FAISS_METRIC = {
    Metric.COSINE: faiss.METRIC_INNER_PRODUCT,
    Metric.DOT: faiss.METRIC_INNER_PRODUCT,
    Metric.L2: faiss.METRIC_L2,
}
# "Error in <C++ function> at <file>:<line>: [Error: ]": where FAISS threw, not why.
_FAISS_WHERE = re.compile(r"^Error in .*? at \S+:\d+: (?:Error: )?", re.DOTALL)


def translate_error(exc: Exception, what: str) -> VecmigrateError | None:
    """FAISS's C++ exceptions (RuntimeError "Error in ...": an index file it cannot open,
    read or write) and Arrow's refusal of a sidecar are TerminalError; file system errors
    go by ``os_error`` (a full disk, permissions, a file where the directory should be)."""
    if isinstance(exc, OSError):  # pyarrow's ArrowIOError is an OSError
        return os_error(exc, what)
    if isinstance(exc, RuntimeError) and str(exc).startswith("Error in "):
        return TerminalError(f"{what}: {_FAISS_WHERE.sub('', str(exc), count=1)}")
    if isinstance(exc, pa.ArrowInvalid | pa.ArrowTypeError | pa.ArrowNotImplementedError):
        return TerminalError(f"{what}: {exc}")
    return None


def index_class(index: Any) -> str:
    """The class of the index that answers searches (inside an IndexIDMap if wrapped)."""
    return type(faiss.downcast_index(index.index if hasattr(index, "id_map") else index)).__name__


def reconstruct(index: Any, start: int, n: int) -> np.ndarray:
    """Rows ``start`` .. ``start + n`` of the vectors an index searches over."""
    inner = faiss.downcast_index(index.index if hasattr(index, "id_map") else index)
    if isinstance(inner, faiss.IndexIVF) and not inner.direct_map.type:
        inner.make_direct_map()  # IVF lists hold vectors by list; the map finds them by row
    try:
        got: np.ndarray = inner.reconstruct_n(start, n)
    except RuntimeError as exc:
        raise DataError(
            f"cannot read vectors back from a FAISS {type(inner).__name__}: {exc}"
        ) from None
    return got


def build_index(field: VectorField, vectors: np.ndarray) -> Any:
    """The index the schema asks for, over ``vectors`` (normalised for cosine)."""
    metric = FAISS_METRIC[field.metric]
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    if field.metric is Metric.COSINE and len(data):
        data = data / np.maximum(np.linalg.norm(data, axis=1, keepdims=True), 1e-30)
    spec = field.index or IndexSpec(kind="flat")
    params = spec.params
    index: Any
    if spec.kind == "hnsw":
        index = faiss.IndexHNSWFlat(field.dim, int(params.get("M", 32)), metric)
        index.hnsw.efConstruction = int(params.get("ef_construction", 40))
    elif spec.kind == "ivf_flat" and len(data) >= 39 * int(params.get("nlist", 100)):
        quantizer = faiss.IndexFlat(field.dim, metric)
        index = faiss.IndexIVFFlat(quantizer, field.dim, int(params.get("nlist", 100)), metric)
        index.train(data)
    else:  # flat, or IVF with too few rows to train: exact search
        index = faiss.IndexFlat(field.dim, metric)
    if len(data):
        index.add(data)
    return index


def write_index(index: Any, path: Path) -> None:
    """Write ``index`` to ``path`` atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    faiss.write_index(index, str(tmp))
    os.replace(tmp, path)


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
