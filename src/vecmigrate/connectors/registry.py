"""What each URI scheme is: its connector class, the extra that installs its client, the
URI parameters it understands, and how its storage is located (a local path or a server).

Engine modules are imported lazily, on first use of their scheme, so ``import vecmigrate``
pulls in no engine client. Engines of other packages plug in through the entry-point group
``vecmigrate.connectors`` (name: the URI scheme, value: ``module:ConnectorClass``); their
class declares ``Config``, ``storage`` and ``default_port`` itself.
"""

from __future__ import annotations

import difflib
import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Literal, NamedTuple

from vecmigrate.errors import ConfigError

if TYPE_CHECKING:
    from vecmigrate.connectors.base import Connector

Storage = Literal["path", "server", "service"]


class Scheme(NamedTuple):
    """One URI scheme. ``scope`` names the parameters (with their defaults) that select
    separate storage on the same server: two URIs differing there are different stores.
    The parameters a scheme takes are its connector's ``Config``."""

    module: str
    cls: str
    extra: str | None
    storage: Storage
    default_port: int | None = None
    scope: tuple[tuple[str, str], ...] = ()
    # Schemes that reach the same storage (postgresql:// and pgvector://) share a family.
    family: str | None = None
    # The database a server URI names when its path names none.
    default_db: str = ""


_C = "vecmigrate.connectors."
_CHROMA_SCOPE = (("tenant", "default_tenant"), ("database", "default_database"))
_PG_SCOPE = (("schema", "public"),)

REGISTRY: dict[str, Scheme] = {
    "dump": Scheme(_C + "dump", "DumpConnector", None, "path"),
    "chroma": Scheme(_C + "chroma", "ChromaConnector", "chroma", "path", scope=_CHROMA_SCOPE),
    "chroma+http": Scheme(
        _C + "chroma", "ChromaConnector", "chroma", "server", 8000, _CHROMA_SCOPE
    ),
    "lancedb": Scheme(_C + "lancedb", "LanceDBConnector", "lancedb", "path"),
    "pgvector": Scheme(
        _C + "pgvector",
        "PgvectorConnector",
        "pgvector",
        "server",
        5432,
        _PG_SCOPE,
        default_db="postgres",
    ),
    "postgresql": Scheme(
        _C + "pgvector",
        "PgvectorConnector",
        "pgvector",
        "server",
        5432,
        _PG_SCOPE,
        family="pgvector",
        default_db="postgres",
    ),
    "qdrant": Scheme(_C + "qdrant", "QdrantConnector", "qdrant", "server", 6333),
    "qdrant+local": Scheme(_C + "qdrant", "QdrantConnector", "qdrant", "path"),
    "qdrant-edge": Scheme(_C + "qdrant_edge", "QdrantEdgeConnector", "qdrant-edge", "path"),
    "faiss": Scheme(_C + "faiss", "FaissConnector", "faiss", "path"),
    "milvus": Scheme(
        _C + "milvus", "MilvusConnector", "milvus", "server", 19530, default_db="default"
    ),
    "milvus-lite": Scheme(_C + "milvus", "MilvusLiteConnector", "milvus", "path"),
    "sqlite-vec": Scheme(_C + "sqlite_vec", "SqliteVecConnector", "sqlite-vec", "path"),
    "redis": Scheme(_C + "redis", "RedisConnector", "redis", "server", 6379, default_db="0"),
    "pinecone": Scheme(
        _C + "pinecone",
        "PineconeConnector",
        "pinecone",
        "service",
        scope=(("host", ""), ("namespace", "")),
    ),
    "weaviate": Scheme(_C + "weaviate", "WeaviateConnector", "weaviate", "server", 8080),
    "elasticsearch": Scheme(
        _C + "search.elasticsearch", "ElasticsearchConnector", "elasticsearch", "server", 9200
    ),
    "opensearch": Scheme(
        _C + "search.opensearch", "OpenSearchConnector", "opensearch", "server", 9200
    ),
    # Files (pyarrow and numpy are core dependencies: no extra).
    "parquet": Scheme(_C + "parquet", "ParquetConnector", None, "path"),
    "jsonl": Scheme(_C + "jsonl", "JsonlConnector", None, "path"),
    "csv": Scheme(_C + "csv", "CsvConnector", None, "path"),
    "npy": Scheme(_C + "npy", "NpyConnector", None, "path"),
    "hf": Scheme(_C + "hf", "HfConnector", None, "path"),
    "s3vectors": Scheme(
        _C + "s3vectors", "S3VectorsConnector", "s3vectors", "service", scope=(("region", ""),)
    ),
    "turbopuffer": Scheme(
        _C + "turbopuffer",
        "TurbopufferConnector",
        "turbopuffer",
        "service",
        scope=(("region", ""), ("base_url", ""), ("prefix", "")),
    ),
    "azure-search": Scheme(
        _C + "azure_search",
        "AzureSearchConnector",
        "azure-search",
        "service",
        scope=(("base_url", ""),),
    ),
}


ENTRY_POINT_GROUP = "vecmigrate.connectors"


@cache
def _plugins() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def known_schemes() -> set[str]:
    """Every scheme: built in and from installed plug-ins."""
    return {*REGISTRY, *_plugins()}


def scheme_info(scheme: str) -> Scheme:
    """What ``scheme`` is: built in, or declared by an installed plug-in's class."""
    if scheme in REGISTRY:
        return REGISTRY[scheme]
    if scheme in _plugins():
        cls = connector_class(scheme)
        module, _, name = _plugins()[scheme].partition(":")
        return Scheme(module, name, None, cls.storage, cls.default_port)
    known = ", ".join(sorted(known_schemes()))
    close = difflib.get_close_matches(scheme, sorted(known_schemes()), n=1)
    guess = f"did you mean {close[0]}://? " if close else ""
    raise ConfigError(f"unknown engine scheme {scheme!r}", hint=f"{guess}known: {known}")


def connector_class(scheme: str) -> type[Connector]:
    """The connector class for a URI scheme; ConfigError names the extra to install."""
    if scheme in REGISTRY:
        info = REGISTRY[scheme]
        target, extra = f"{info.module}:{info.cls}", info.extra
    elif scheme in _plugins():
        target, extra = _plugins()[scheme], None
    else:
        scheme_info(scheme)  # raises, naming the known schemes
    module_name, _, class_name = target.partition(":")
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
