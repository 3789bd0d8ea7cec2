"""OpenSearch: ``opensearch://host:9200`` (+ ``?user=admin&password=env:NAME`` or
``?token=env:NAME`` for a bearer token; ``?https=1``, ``?ca=/path/ca.pem``, ``?verify=0``),
over the official ``opensearch-py`` 3.x client.

A collection is an index with ``index.knn: true``. Vectors are ``knn_vector`` fields with
``method`` {name hnsw, engine lucene (default) or faiss via ``?engine=faiss``, space_type
cosinesimil / innerproduct / l2, parameters m / ef_construction}. Scans use the PIT API
(OpenSearch 2.4+) with ``search_after`` (see ``_filters``). Filtered kNN uses the
``knn`` query's own ``filter`` (efficient filtering on lucene and faiss).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opensearchpy import OpenSearch, TransportError

from vecmigrate.connectors.config import Secret, reveal
from vecmigrate.connectors.search._base import SearchConfig, SearchEngineConnector
from vecmigrate.connectors.search._client import translate_opensearch_error
from vecmigrate.connectors.search._filters import search_capabilities
from vecmigrate.errors import ConfigError
from vecmigrate.model import IndexSpec, Metric, VectorField
from vecmigrate.uri import ConnectionURI

_SPACE = {Metric.COSINE: "cosinesimil", Metric.DOT: "innerproduct", Metric.L2: "l2"}
_METRIC = {v: k for k, v in _SPACE.items()}
_ENGINES = frozenset({"lucene", "faiss"})


@dataclass(frozen=True)
class OpenSearchConfig(SearchConfig):
    """The shared search settings, a bearer token, and the k-NN engine of new indexes
    (OpenSearch takes no API key: user + password, or a token)."""

    token: Secret | None = None
    engine: str = "lucene"


class OpenSearchConnector(SearchEngineConnector):
    Config = OpenSearchConfig
    config: OpenSearchConfig

    """OpenSearch k-NN indexes with ``knn_vector`` fields and typed metadata fields."""

    schemes = ("opensearch",)
    # No flat knn_vector method: exact search would be a script query, not an index.
    capabilities = search_capabilities(index_kinds=frozenset({"hnsw"}))

    translate_error = staticmethod(translate_opensearch_error)

    def __init__(self, uri: ConnectionURI) -> None:
        super().__init__(uri)
        https = self.config.https
        kwargs: dict[str, Any] = {"use_ssl": https, "max_retries": 0, "retry_on_timeout": False}
        password = reveal(self.config.password)
        token = reveal(self.config.token)
        if password is not None:
            kwargs["http_auth"] = (uri.user or self.config.user or "admin", password)
        elif token:
            kwargs["headers"] = {"authorization": f"Bearer {token}"}
        if https:
            kwargs["verify_certs"] = self.config.verify
            kwargs["ssl_show_warn"] = False
            if self.config.ca:
                kwargs["ca_certs"] = self.config.ca
        self.engine_name = self.config.engine
        if self.engine_name not in _ENGINES:
            raise ConfigError(
                f"unknown OpenSearch k-NN engine {self.engine_name!r}",
                hint=f"use one of {sorted(_ENGINES)}",
            )
        self._host = {"host": uri.host or "127.0.0.1", "port": uri.port or 9200}
        self._client_kwargs = kwargs

    def _open_client(self) -> Any:
        return OpenSearch(hosts=[self._host], timeout=60, **self._client_kwargs)

    def _op(self, op: str, **kw: Any) -> Any:
        c = self.client
        if op == "exists":
            return bool(c.indices.exists(index=kw["index"]))
        if op == "create":
            return c.indices.create(index=kw["index"], body=kw["body"])
        if op == "delete":
            return c.indices.delete(index=kw["index"])
        if op == "mapping":
            return c.indices.get_mapping(index=kw["index"])[kw["index"]]["mappings"]
        if op == "mappings":
            return c.indices.get_mapping()
        if op == "refresh":
            return c.indices.refresh(index=kw["index"])
        if op == "count":
            return c.count(index=kw["index"], body=kw["body"])
        if op == "search":
            if kw.get("index") is None:  # PIT searches name no index
                return c.search(body=kw["body"])
            return c.search(index=kw["index"], body=kw["body"])
        if op == "bulk":
            return c.bulk(index=kw["index"], body=kw["body"])
        if op == "open_pit":
            try:
                return c.create_pit(index=kw["index"], params={"keep_alive": "5m"})["pit_id"]
            except TransportError as exc:
                if "no handler found" in str(exc.info):  # OpenSearch < 2.4: no PIT API
                    raise ConfigError(
                        f"{self.uri} has no point-in-time API, which scans need",
                        hint="vecmigrate reads from OpenSearch 2.4 or newer",
                    ) from None
                raise
        if op == "close_pit":
            return c.delete_pit(body={"pit_id": [kw["id"]]})
        raise AssertionError(op)

    def _index_settings(self) -> dict[str, Any]:
        return {"index": {"knn": True, "number_of_shards": self.config.shards}}

    def _vector_mapping(self, field: VectorField) -> dict[str, Any]:
        params = field.index.params if field.index else {}
        return {
            "type": "knn_vector",
            "dimension": field.dim,
            "method": {
                "name": "hnsw",
                "space_type": _SPACE[field.metric],
                "engine": self.engine_name,
                "parameters": {
                    "m": int(params.get("M", 16)),
                    "ef_construction": int(params.get("ef_construction", 100)),
                },
            },
        }

    def _vector_from_mapping(self, name: str, spec: dict[str, Any]) -> VectorField | None:
        if spec.get("type") != "knn_vector":
            return None
        if "dimension" not in spec:
            raise ConfigError(f"knn_vector {name!r} has no dimension (trained model field?)")
        method = spec.get("method") or {}
        # The space type lives in the method or (2.x+) on the field; OpenSearch's default is l2.
        space = method.get("space_type") or spec.get("space_type") or "l2"
        if space not in _METRIC:
            raise ConfigError(f"knn_vector {name!r} has unsupported space_type {space!r}")
        parameters = method.get("parameters") or {}
        index_params: dict[str, int | float | str] = {
            "engine": str(method.get("engine", "default"))
        }
        if "m" in parameters:
            index_params["M"] = int(parameters["m"])
        if "ef_construction" in parameters:
            index_params["ef_construction"] = int(parameters["ef_construction"])
        return VectorField(
            name=name,
            dim=int(spec["dimension"]),
            metric=_METRIC[space],
            index=IndexSpec(kind="hnsw", params=index_params),
        )

    def _source_param(self) -> Any:
        return True  # vectors are in _source (3.x derived source rebuilds them on read)

    def _foreign_sort(self) -> list[Any]:
        # OpenSearch still allows sorting on _id: deterministic across PITs too.
        return [{"_id": "asc"}]

    def _knn_body(
        self, field: str, vector: list[float], k: int, flt: dict[str, Any] | None, params: Any
    ) -> dict[str, Any]:
        knn: dict[str, Any] = {"vector": vector, "k": k}
        if flt is not None:
            knn["filter"] = flt
        if "ef_search" in params:
            knn["method_parameters"] = {"ef_search": int(params["ef_search"])}
        return {"size": k, "query": {"knn": {field: knn}}, "_source": False}
