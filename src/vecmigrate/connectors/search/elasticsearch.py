"""Elasticsearch: ``elasticsearch://host:9200`` (+ ``?api_key=env:NAME`` or
``?user=elastic&password=env:NAME``; ``?https=1`` and ``?ca=/path/ca.pem`` for TLS,
``?verify=0`` to skip certificate checks), over the official ``elasticsearch`` 9.x client.

A collection is an index. Vectors are ``dense_vector`` fields with ``similarity``
``cosine`` / ``max_inner_product`` (vecmigrate's ``dot``: unlike ES's ``dot_product`` it
does not require unit-length vectors) / ``l2_norm`` and ``index_options`` ``hnsw`` (m,
ef_construction) or ``flat``; ``?index_type=int8_hnsw`` (or int4_hnsw, bbq_hnsw,
int8_flat) picks a quantized index deliberately. Scans use a point in time with
``search_after`` (see ``_filters``). From 9.2 on, ES leaves vectors out of ``_source``
unless asked: every read that needs them asks for them (``exclude_vectors: false``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from elasticsearch import Elasticsearch

from vecmigrate.connectors.config import Secret, reveal
from vecmigrate.connectors.search._base import SearchConfig, SearchEngineConnector
from vecmigrate.connectors.search._client import translate_elasticsearch_error
from vecmigrate.connectors.search._filters import search_capabilities
from vecmigrate.errors import ConfigError
from vecmigrate.model import IndexSpec, Metric, VectorField
from vecmigrate.uri import ConnectionURI

_SIMILARITY = {Metric.COSINE: "cosine", Metric.DOT: "max_inner_product", Metric.L2: "l2_norm"}
_METRIC = {
    "cosine": Metric.COSINE,
    "max_inner_product": Metric.DOT,
    "dot_product": Metric.DOT,
    "l2_norm": Metric.L2,
}
_INDEX_TYPES = frozenset(
    {"hnsw", "int8_hnsw", "int4_hnsw", "bbq_hnsw", "flat", "int8_flat", "int4_flat", "bbq_flat"}
)


@dataclass(frozen=True)
class ElasticsearchConfig(SearchConfig):
    """The shared search settings, an API key, and the dense_vector index type."""

    api_key: Secret | None = None
    index_type: str | None = None


class ElasticsearchConnector(SearchEngineConnector):
    Config = ElasticsearchConfig
    config: ElasticsearchConfig

    """Elasticsearch indexes with ``dense_vector`` fields and typed metadata fields."""

    schemes = ("elasticsearch",)
    # ES >= 9.2 rebuilds vectors it left out of _source from the indexed values (cosine
    # vectors are stored normalised with their magnitude): allow float32 rounding.
    capabilities = search_capabilities(vector_tolerance=1e-6)
    sliced_foreign_scans = True  # PIT + slice, as the search API documents

    translate_error = staticmethod(translate_elasticsearch_error)

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        https = self.config.https
        self._host = f"{'https' if https else 'http'}://{self.address}"
        kwargs: dict[str, Any] = {"max_retries": 0, "retry_on_timeout": False}
        api_key = reveal(self.config.api_key)
        password = reveal(self.config.password)
        if api_key:
            kwargs["api_key"] = api_key
        elif password is not None:
            kwargs["basic_auth"] = (uri.user or self.config.user or "elastic", password)
        if https:
            kwargs["verify_certs"] = self.config.verify
            if self.config.ca:
                kwargs["ca_certs"] = self.config.ca
        self.index_type = self.config.index_type
        if self.index_type is not None and self.index_type not in _INDEX_TYPES:
            raise ConfigError(
                f"unknown Elasticsearch index_type {self.index_type!r}",
                hint=f"use one of {sorted(_INDEX_TYPES)}",
            )
        self._client_kwargs = kwargs
        self._version: tuple[int, ...] | None = None

    def _open_client(self) -> Any:
        return Elasticsearch(self._host, request_timeout=60, **self._client_kwargs)

    def version(self) -> tuple[int, ...]:
        """Server version from ``GET /``."""
        if self._version is None:
            info = self._read("reading the cluster info", "info")
            number = str(info["version"]["number"]).split("-")[0]
            self._version = tuple(int(x) for x in number.split(".")[:3])
        return self._version

    def _op(self, op: str, **kw: Any) -> Any:
        c = self.client
        if op == "info":
            return c.info().body
        if op == "exists":
            return bool(c.indices.exists(index=kw["index"]))
        if op == "create":
            b = kw["body"]
            return c.indices.create(
                index=kw["index"], settings=b["settings"], mappings=b["mappings"]
            ).body
        if op == "delete":
            return c.indices.delete(index=kw["index"]).body
        if op == "mapping":
            got = c.indices.get_mapping(index=kw["index"]).body
            return got[kw["index"]]["mappings"]
        if op == "mappings":
            return c.indices.get_mapping().body
        if op == "refresh":
            return c.indices.refresh(index=kw["index"]).body
        if op == "count":
            return c.count(index=kw["index"], query=kw["body"]["query"]).body
        if op == "search":
            return c.search(index=kw.get("index"), body=kw["body"]).body
        if op == "bulk":
            return c.bulk(index=kw["index"], operations=cast(Any, kw["body"])).body
        if op == "open_pit":
            return c.open_point_in_time(index=kw["index"], keep_alive="5m").body["id"]
        if op == "close_pit":
            return c.close_point_in_time(id=kw["id"]).body
        raise AssertionError(op)

    def _index_settings(self) -> dict[str, Any]:
        return {"number_of_shards": self.config.shards}

    def _vector_mapping(self, field: VectorField) -> dict[str, Any]:
        params = field.index.params if field.index else {}
        kind = field.index.kind if field.index else "auto"
        itype = self.index_type or ("flat" if kind == "flat" else "hnsw")
        options: dict[str, Any] = {"type": itype}
        if itype.endswith("hnsw"):
            options["m"] = int(params.get("M", 16))
            options["ef_construction"] = int(params.get("ef_construction", 100))
        return {
            "type": "dense_vector",
            "dims": field.dim,
            "index": True,
            "similarity": _SIMILARITY[field.metric],
            "index_options": options,
        }

    def _vector_from_mapping(self, name: str, spec: dict[str, Any]) -> VectorField | None:
        if spec.get("type") != "dense_vector" or "dims" not in spec:
            return None
        similarity = spec.get("similarity", "cosine")
        if similarity not in _METRIC:
            raise ConfigError(f"dense_vector {name!r} has unsupported similarity {similarity!r}")
        options = spec.get("index_options") or {}
        itype = str(options.get("type", "hnsw"))
        params: dict[str, int | float | str] = {"index_type": itype}
        if "m" in options:
            params["M"] = int(options["m"])
        if "ef_construction" in options:
            params["ef_construction"] = int(options["ef_construction"])
        index = IndexSpec(kind="hnsw" if itype.endswith("hnsw") else "flat", params=params)
        return VectorField(
            name=name, dim=int(spec["dims"]), metric=_METRIC[similarity], index=index
        )

    def _source_param(self) -> Any:
        # Before 9.1 there is no exclude_vectors option (vectors always are in _source).
        return {"exclude_vectors": False} if self.version() >= (9, 1) else True

    def _foreign_sort(self) -> list[Any]:
        # Sorting on _id needs fielddata ES disables; _shard_doc is PIT's own tiebreaker.
        return ["_shard_doc"]

    def _knn_body(
        self, field: str, vector: list[float], k: int, flt: dict[str, Any] | None, params: Any
    ) -> dict[str, Any]:
        knn: dict[str, Any] = {
            "field": field,
            "query_vector": vector,
            "k": k,
            "num_candidates": int(params.get("num_candidates", min(10_000, max(100, 10 * k)))),
        }
        if flt is not None:
            knn["filter"] = flt
        return {"knn": knn, "size": k, "_source": False}
