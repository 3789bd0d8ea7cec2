"""Collection schemas of Qdrant Edge shards (used only by ``connectors.qdrant_edge``).

A shard vecmigrate made carries its schema in ``vecmigrate_schema.json``; its metric is
still read from the shard's config (a shard recreated by hand searches with what its
config says). A shard another program made is described from its config: vectors (size,
distance, HNSW), sparse vectors, and payload keys sampled from its first points. The
config is Edge's ``edge_config.json`` (Edge has no call that returns it), or, before the
shard was first loaded by Edge, its segments' ``segment.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe

from vecmigrate.connectors.qdrant._records import (
    DOC_KEY,
    ID_KEY,
    NS_KEY,
    POINT_IDS_SETTING,
    RESERVED_KEYS,
    canonical_uuid,
)
from vecmigrate.connectors.qdrant_edge._client import CONFIG_FILE
from vecmigrate.connectors.qdrant_edge._records import UNNAMED_FIELD, EdgePoint, vector_key
from vecmigrate.model import (
    METRIC_UNKNOWN,
    CollectionSchema,
    IdType,
    IndexSpec,
    Metric,
    SparseField,
    VectorField,
)
from vecmigrate.records import infer_metadata_fields

ENGINE = "qdrant-edge"
DISTANCE = {
    Metric.COSINE: qe.Distance.Cosine,
    Metric.DOT: qe.Distance.Dot,
    Metric.L2: qe.Distance.Euclid,
}
# Distances as the shard's config spells them.
METRIC_OF = {"Cosine": Metric.COSINE, "Dot": Metric.DOT, "Euclid": Metric.L2}
# Qdrant's defaults, used when neither the vector nor the shard sets one.
HNSW_M, HNSW_EF_CONSTRUCT, FULL_SCAN_THRESHOLD_KB = 16, 100, 10_000


# -- writing -------------------------------------------------------------------------------
def _hnsw(v: VectorField, notes: dict[str, Any]) -> qe.HnswIndexConfig:
    """The vector's portable index as Qdrant's HNSW settings: ``M`` -> m and
    ``ef_construction`` -> ef_construct; ``flat`` is m=0 (Qdrant builds no graph and
    searches exactly). Qdrant has no IVF: other kinds get HNSW, noted in ``notes``."""
    index = v.index or IndexSpec()
    params = index.params
    if index.kind in ("flat", "none"):
        m = 0
    else:
        m = int(params.get("M", HNSW_M))
        if index.kind not in ("hnsw", "auto"):
            notes[f"{v.name}.index"] = f"hnsw (Qdrant has no {index.kind} index)"
    return qe.HnswIndexConfig(
        m=m,
        ef_construct=int(params.get("ef_construction", HNSW_EF_CONSTRUCT)),
        full_scan_threshold=FULL_SCAN_THRESHOLD_KB,
    )


def edge_config(schema: CollectionSchema) -> tuple[qe.EdgeConfig, dict[str, Any]]:
    """The Edge config of a new shard holding ``schema`` (vectors always named), and the
    notes on what was substituted, for ``engine_settings``."""
    notes: dict[str, Any] = {}
    vectors = {
        v.name: qe.EdgeVectorParams(
            size=v.dim, distance=DISTANCE[v.metric], hnsw_config=_hnsw(v, notes)
        )
        for v in schema.vectors
    }
    sparse = {s.name: qe.EdgeSparseVectorParams() for s in schema.sparse}
    return qe.EdgeConfig(vectors=vectors, sparse_vectors=sparse or None), notes


# -- reading -------------------------------------------------------------------------------
def read_config(path: Path) -> dict[str, Any]:
    """``{"vectors": {name: {size, distance, hnsw_config?}}, "sparse_vectors": {...},
    "hnsw_config": {...}?}`` of the shard at ``path``."""
    cfg = path / CONFIG_FILE
    if cfg.is_file():
        got: dict[str, Any] = json.loads(cfg.read_text(encoding="utf-8"))
        return got
    vectors: dict[str, Any] = {}
    sparse: dict[str, Any] = {}
    for seg in sorted((path / "segments").glob("*/segment.json")):
        data = json.loads(seg.read_text(encoding="utf-8")).get("config", {})
        for name, v in (data.get("vector_data") or {}).items():
            index = v.get("index") or {}
            entry = {"size": v["size"], "distance": v["distance"]}
            if index.get("type") == "hnsw":
                entry["hnsw_config"] = index.get("options") or {}
            vectors.setdefault(name, entry)
        sparse.update({k: {} for k in data.get("sparse_vector_data") or {}})
    return {"vectors": vectors, "sparse_vectors": sparse}


def _index(params: dict[str, Any], config: dict[str, Any]) -> IndexSpec:
    hnsw = {**(config.get("hnsw_config") or {}), **(params.get("hnsw_config") or {})}
    m = int(hnsw.get("m", HNSW_M))
    if m == 0:
        return IndexSpec(kind="flat")
    ef = int(hnsw.get("ef_construct", HNSW_EF_CONSTRUCT))
    return IndexSpec(kind="hnsw", params={"M": m, "ef_construction": ef})


def _metric(name: str, distance: str, notes: dict[str, Any]) -> tuple[Metric, str]:
    """The metric a vector is searched with, and where that was read."""
    metric = METRIC_OF.get(distance)
    if metric is None:
        notes[f"{name}.metric"] = (
            f"unknown: the shard searches with {distance} distance, which vecmigrate has "
            f"no metric for; state vectors.{name}.metric in a mapping"
        )
        return Metric.L2, METRIC_UNKNOWN
    return metric, f"shard config (distance {distance})"


def served(schema: CollectionSchema, config: dict[str, Any]) -> CollectionSchema:
    """``schema`` (as vecmigrate recorded it) with each vector's metric as the shard's
    config searches it; a disagreement is noted in ``engine_settings``."""
    named = config.get("vectors") or {}
    settings = dict(schema.engine_settings)
    vectors = []
    for v in schema.vectors:
        got = named.get(vector_key(schema, v.name))
        if got is not None:
            metric, source = _metric(v.name, got["distance"], settings)
            if metric is not v.metric or source == METRIC_UNKNOWN:
                if source != METRIC_UNKNOWN:
                    settings[f"{v.name}.metric"] = (
                        f"{metric.value} from the shard's config; vecmigrate recorded "
                        f"{v.metric.value} (the shard was changed outside vecmigrate)"
                    )
                v = v.model_copy(update={"metric": metric, "metric_source": source})
        vectors.append(v)
    return schema.replace(engine=ENGINE, vectors=tuple(vectors), engine_settings=settings)


def infer(name: str, config: dict[str, Any], points: Sequence[EdgePoint]) -> CollectionSchema:
    """The schema of a shard another program made: vectors from its config, ids and
    payload keys from ``points`` (its first ones), as the Qdrant connector reads a
    collection it did not make."""
    settings: dict[str, Any] = {}
    named = config.get("vectors") or {}
    # The unnamed vector is the field "vector" (or "unnamed" when a vector has that name).
    unnamed = "unnamed" if "vector" in named else "vector"
    vectors = []
    # The unnamed vector is Qdrant's default one: first (the field searched by default).
    for n, params in sorted(named.items(), key=lambda kv: kv[0] != ""):
        field = n or unnamed
        metric, source = _metric(field, params["distance"], settings)
        vectors.append(
            VectorField(
                name=field,
                dim=int(params["size"]),
                metric=metric,
                index=_index(params, config),
                metric_source=source,
            )
        )
    payloads = [p.payload for p in points]
    metas = [{k: v for k, v in p.items() if k not in RESERVED_KEYS} for p in payloads]
    namespaces = sorted({p[NS_KEY] for p in payloads if NS_KEY in p})
    # A point without vecmigrate's original-id key holds its record under its own id.
    rids = [pl.get(ID_KEY, p.id) for p, pl in zip(points, payloads, strict=True)]
    own = [r == p.id for r, p in zip(rids, points, strict=True)]
    native = not points or any(own)
    if all(isinstance(r, int) for r in rids) and all(own):
        id_type = IdType.INT
    elif native and all(canonical_uuid(r) for r in rids):
        id_type = IdType.UUID
    else:
        id_type = IdType.STRING
    settings["unnamed_vector"] = "" in named
    if "" in named:
        settings[UNNAMED_FIELD] = unnamed
    if native:
        settings[POINT_IDS_SETTING] = "native"
    return CollectionSchema(
        name=name,
        id_type=id_type,
        vectors=tuple(vectors),
        sparse=tuple(SparseField(name=n) for n in (config.get("sparse_vectors") or {})),
        metadata=infer_metadata_fields(metas),
        has_document=any(DOC_KEY in p for p in payloads),
        namespaces=tuple(namespaces) if namespaces else None,
        engine=ENGINE,
        engine_settings=settings,
    )
