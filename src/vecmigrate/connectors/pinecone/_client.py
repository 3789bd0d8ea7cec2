"""Pinecone calls for ``connectors/pinecone.py``: the client, its error mapping, bounded
fetches and upserts on one index handle, type sampling, the reserved schema namespace and
``?ids_file=`` lists.

Everything here works on a data-plane handle (``pc.index(host=...)``) or a model from the
control plane; connection state and caching stay in the connector, whose contract calls
(which the base class runs inside ``translate_error``) are the only callers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import quote

import numpy as np
from pinecone import Pinecone  # the client: missing, the registry names the extra

from vecmigrate.connectors.pinecone._records import SCHEMA_NAMESPACE, index_name, to_pinecone_id
from vecmigrate.errors import ConfigError, TerminalError, TransientError, VecmigrateError
from vecmigrate.model import CollectionSchema

MAX_REQUEST_BYTES = 2 * 1024 * 1024
_FLOAT_JSON_BYTES = 25  # longest JSON text of one float64 plus its comma


def open_client(api_key: str, host: str | None) -> Any:
    """A Pinecone control-plane client (no request is made until it is used)."""
    return Pinecone(api_key=api_key, host=host, source_tag="vecmigrate")


def translate_error(exc: Exception, what: str) -> VecmigrateError | None:
    """Pinecone's errors: 408/429/5xx and connection failures are transient, other HTTP
    errors and the client's own validation terminal; anything else is not the client's."""
    from pinecone.errors.exceptions import (
        ApiError,
        PineconeConnectionError,
        PineconeError,
        PineconeTimeoutError,
    )

    if isinstance(exc, (PineconeConnectionError, PineconeTimeoutError)):
        return TransientError(f"{what}: {exc.message}")
    if isinstance(exc, ApiError):
        status = exc.status_code
        msg = f"{what}: HTTP {status}: {exc.message}"
        if status in (408, 429) or (status or 0) >= 500:
            return TransientError(msg)
        return TerminalError(msg)
    if isinstance(exc, PineconeError):  # client-side validation
        return TerminalError(f"{what}: {exc.message}")
    return None


def index_model(pc: Any, name: str) -> Any | None:
    """The control plane's model of the index of collection ``name`` (None: no such index)."""
    from pinecone.errors.exceptions import NotFoundError

    try:
        return pc.indexes.describe(index_name(name))
    except NotFoundError:
        return None


def is_pod(model: Any) -> bool:
    """The index model describes a pod-based (not serverless) index."""
    from pinecone.models.indexes.deployment import PodDeployment

    return isinstance(model.deployment, PodDeployment)


def fetch_raw(index: Any, ns: str, pids: Sequence[str]) -> dict[str, Any]:
    """The records of namespace ``ns`` with these Pinecone ids, by id (missing: absent)."""
    out: dict[str, Any] = {}
    start = 0
    while start < len(pids):
        # GET with ids in the query string: bounded by count and URL length.
        end, chars = start, 0
        while end < len(pids) and end - start < 100 and chars < 6000:
            chars += len(quote(pids[end])) + 5
            end += 1
        res = index.fetch(ids=list(pids[start:end]), namespace=ns)
        out.update(res.vectors)
        start = end
    return out


def upsert_rows(
    index: Any,
    ns: str,
    pids: list[str],
    matrix: np.ndarray,
    metas: list[tuple[dict[str, Any], int]],
    rows: list[int],
) -> None:
    """Upsert rows ``rows`` of a batch (Pinecone ids, vectors, encoded metadata and its
    size) into ``ns``: at most 1,000 records and under the 2 MB request limit per call."""
    per_vector = matrix.shape[1] * _FLOAT_JSON_BYTES + 64
    chunk: list[dict[str, Any]] = []
    size = 0
    for i in rows:
        rec = {"id": pids[i], "values": matrix[i].tolist()}
        md_bytes = 0
        if metas[i][0]:
            rec["metadata"] = metas[i][0]
            md_bytes = metas[i][1]
        need = per_vector + len(pids[i]) + md_bytes
        if chunk and (len(chunk) == 1000 or size + need > MAX_REQUEST_BYTES - 4096):
            index.upsert(vectors=chunk, namespace=ns)
            chunk, size = [], 0
        chunk.append(rec)
        size += need
    if chunk:
        index.upsert(vectors=chunk, namespace=ns)


def list_ids(index: Any, ns: str, token: str | None, want: int) -> tuple[list[str], str | None]:
    """Up to ``want`` ids of ``ns`` from ``token`` on (serverless only), and the token after
    them (None: the namespace is done)."""
    ids: list[str] = []
    while len(ids) < want:
        page = index.list_paginated(
            namespace=ns, limit=min(100, want - len(ids)), pagination_token=token
        )
        ids += [v.id for v in page.vectors]
        token = page.pagination.next if page.pagination else None
        if token is None:
            break
    return ids, token


def require_serverless(model: Any | None) -> None:
    """Refuse to enumerate a pod-based index (Pinecone lists ids only on serverless)."""
    if model is not None and is_pod(model):
        raise ConfigError(
            f"Pinecone index {model.name!r} is pod-based: Pinecone lists record ids only "
            "on serverless indexes, so vecmigrate cannot enumerate its records (and will "
            "not guess them with random queries)",
            hint="write the ids your application knows to a file, one per line or "
            "NAMESPACE<TAB>ID, and add ?ids_file=/path to the URI; or restore the index "
            "as serverless (from a collection or backup) first",
        )


def sample_metadata(
    index: Any, namespaces: Iterable[str], serverless: bool, dim: int
) -> list[dict[str, Any]]:
    """Metadata of up to 100 records from each of the first 10 namespaces (for types)."""
    rows: list[dict[str, Any]] = []
    for ns in sorted(namespaces)[:10]:
        if serverless:
            page = index.list_paginated(namespace=ns, limit=100)
            ids = [v.id for v in page.vectors]
            recs = fetch_raw(index, ns, ids).values() if ids else []
        else:  # sampling for types only; never used to enumerate records
            probe = [1.0] + [0.0] * (dim - 1)
            recs = index.query(vector=probe, top_k=100, namespace=ns, include_metadata=True).matches
        rows += [dict(r.metadata or {}) for r in recs]
    return rows


# -- a schema too large for the index tags ----------------------------------------------------
def write_schema_records(index: Any, schema: CollectionSchema) -> None:
    """Store the schema as records of the reserved namespace, 8,000 characters each."""
    text = schema.to_json()
    parts = [text[i : i + 8000] for i in range(0, len(text), 8000)]
    probe = [1.0] + [0.0] * (schema.vector.dim - 1)
    vectors = [
        {"id": f"schema-{i:04d}", "values": probe, "metadata": {"json": p, "parts": len(parts)}}
        for i, p in enumerate(parts)
    ]
    for start in range(0, len(vectors), 100):
        index.upsert(vectors=vectors[start : start + 100], namespace=SCHEMA_NAMESPACE)


def read_schema_records(index: Any, name: str) -> CollectionSchema:
    """The schema ``write_schema_records`` stored in the index of ``name``."""
    first = fetch_raw(index, SCHEMA_NAMESPACE, ["schema-0000"]).get("schema-0000")
    if first is None:
        raise ConfigError(f"the stored schema of {name!r} is missing from its index")
    n = int(first.metadata["parts"])
    recs = fetch_raw(index, SCHEMA_NAMESPACE, [f"schema-{i:04d}" for i in range(n)])
    text = "".join(recs[f"schema-{i:04d}"].metadata["json"] for i in range(n))
    return CollectionSchema.from_json(text)


# -- ?ids_file= -------------------------------------------------------------------------------
def read_ids_file(
    path: str, line: int, rows: int, namespace: str | None
) -> Iterator[tuple[dict[str, list[str]], int]]:
    """Chunks of ``rows`` lines of a user's id list, from line ``line`` on: the Pinecone ids
    they name by namespace (``namespace`` overrides the file's), and the next line."""
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ConfigError(f"cannot read ids_file {path!r}: {exc.strerror}") from None
    with handle:
        lines = itertools.islice(handle, line, None)
        while chunk := list(itertools.islice(lines, rows)):
            line += len(chunk)
            by_ns: dict[str, list[str]] = {}
            for text in (c.rstrip("\r\n") for c in chunk):
                ns, tab, rid = text.partition("\t")
                ns, rid = (ns, rid) if tab else ("", text)
                if rid:
                    by_ns.setdefault(namespace or ns, []).append(to_pinecone_id(rid))
            yield by_ns, line
