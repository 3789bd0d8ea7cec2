"""Connector registry. Engine modules are imported lazily, on first use of their scheme,
so ``import vecmigrate`` pulls in no engine client."""

from __future__ import annotations

import importlib

from vecmigrate.connectors.base import Connector
from vecmigrate.errors import ConfigError
from vecmigrate.uri import ConnectionURI

# scheme -> (module, class, pip extra that provides the client)
REGISTRY: dict[str, tuple[str, str, str | None]] = {
    "dump": ("vecmigrate.connectors.dump", "DumpConnector", None),
    "chroma": ("vecmigrate.connectors.chroma", "ChromaConnector", "chroma"),
    "chroma+http": ("vecmigrate.connectors.chroma", "ChromaConnector", "chroma"),
    "lancedb": ("vecmigrate.connectors.lancedb", "LanceDBConnector", "lancedb"),
    "pgvector": ("vecmigrate.connectors.pgvector", "PgvectorConnector", "pgvector"),
    "postgresql": ("vecmigrate.connectors.pgvector", "PgvectorConnector", "pgvector"),
    "qdrant": ("vecmigrate.connectors.qdrant", "QdrantConnector", "qdrant"),
    "qdrant+local": ("vecmigrate.connectors.qdrant", "QdrantConnector", "qdrant"),
    "faiss": ("vecmigrate.connectors.faiss", "FaissConnector", "faiss"),
    "milvus": ("vecmigrate.connectors.milvus", "MilvusConnector", "milvus"),
    "milvus-lite": ("vecmigrate.connectors.milvus", "MilvusConnector", "milvus"),
    "sqlite-vec": ("vecmigrate.connectors.sqlite_vec", "SqliteVecConnector", "sqlite-vec"),
    "redis": ("vecmigrate.connectors.redis", "RedisConnector", "redis"),
    "pinecone": ("vecmigrate.connectors.pinecone", "PineconeConnector", "pinecone"),
    "weaviate": ("vecmigrate.connectors.weaviate", "WeaviateConnector", "weaviate"),
    "elasticsearch": (
        "vecmigrate.connectors.elasticsearch",
        "ElasticsearchConnector",
        "elasticsearch",
    ),
    "opensearch": ("vecmigrate.connectors.opensearch", "OpenSearchConnector", "opensearch"),
}


def connector_class(scheme: str) -> type[Connector]:
    """The connector class for a URI scheme; ConfigError names the extra to install."""
    try:
        module_name, class_name, extra = REGISTRY[scheme]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ConfigError(f"unknown engine scheme {scheme!r}", hint=f"known: {known}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or str(exc)
        raise ConfigError(
            f"the client for {scheme!r} is not installed ({missing})",
            hint=f"pip install 'vecmigrate[{extra}]'" if extra else None,
        ) from None
    cls: type[Connector] = getattr(module, class_name)
    return cls


def connect(uri: str | ConnectionURI) -> Connector:
    """Open a connector for a connection URI such as ``chroma:///data/chroma``."""
    parsed = uri if isinstance(uri, ConnectionURI) else ConnectionURI.parse(uri)
    return connector_class(parsed.scheme)(parsed)


__all__ = ["REGISTRY", "Connector", "connect", "connector_class"]
