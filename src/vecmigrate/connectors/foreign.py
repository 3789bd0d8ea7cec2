"""Reading collections vecmigrate did not lay out: which column holds the id, the text,
the vectors and the metadata, and which metric the vectors are searched with.

Nothing here asks a user to change their source: columns are named by URI parameters
(``?id_field=pk&document_field=page_content``) or recognised by their common names, and a
choice that cannot be made is refused with the parameter that makes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.connectors.config import ConnectorConfig
from vecmigrate.errors import ConfigError
from vecmigrate.model import METRIC_UNKNOWN, Metric

# Common names, in order of preference, as LangChain, LlamaIndex, Haystack and hand-made
# tables spell them.
ID_NAMES = ("id", "_id", "pk", "uuid", "node_id", "doc_id", "chunk_id")
DOCUMENT_NAMES = ("document", "text", "page_content", "content", "chunk", "body")
# JSON/struct columns whose keys are the metadata (LangChain's PGVectorStore keeps what
# has no column of its own in ``langchain_metadata``).
METADATA_NAMES = ("metadata", "metadata_", "cmetadata", "meta", "payload", "langchain_metadata")
UNIT_TOLERANCE = 1e-3
SAMPLE_ROWS = 1000


@dataclass(frozen=True)
class FieldsConfig(ConnectorConfig):
    """URI parameters naming the columns of a collection another tool laid out."""

    id_field: str | None = None
    document_field: str | None = None
    # Comma-separated when several columns hold vectors to carry.
    vector_field: str | None = None
    # A JSON or struct column whose keys become typed metadata fields.
    metadata_field: str | None = None

    @property
    def vector_fields(self) -> tuple[str, ...]:
        """The vector columns named (empty: every vector column)."""
        return tuple(v.strip() for v in (self.vector_field or "").split(",") if v.strip())


@dataclass(frozen=True)
class ForeignColumns:
    """Where a foreign collection keeps each part of a record (None: it has none)."""

    id: str
    document: str | None
    metadata: str | None


def pick_column(
    collection: str,
    role: str,
    param: str,
    stated: str | None,
    candidates: Iterable[str],
    names: Iterable[str],
    *,
    required: bool,
) -> str | None:
    """The column that plays ``role``: the one ``stated`` by ``param``, else the one common
    name present among ``candidates``; ConfigError when the stated one is missing, when
    several common names are present, or when a required one is absent."""
    available = list(names)
    if stated is not None:
        if stated not in available:
            raise ConfigError(
                f"{collection!r} has no column {stated!r} ({param}={stated})",
                hint=f"its columns: {', '.join(available)}",
            )
        return stated
    found = [c for c in candidates if c in available]
    if len(found) > 1 and role != "id":
        raise ConfigError(
            f"{collection!r} could keep its {role} in any of {found}",
            hint=f"say which with ?{param}=NAME",
        )
    if found:
        return found[0]
    if required:
        raise ConfigError(
            f"{collection!r} has no column recognisable as its {role}",
            hint=f"name it with ?{param}=NAME (columns: {', '.join(available)})",
        )
    return None


def foreign_columns(
    collection: str, config: FieldsConfig, kinds: Mapping[str, str]
) -> ForeignColumns:
    """Id, document and metadata columns of a foreign collection. ``kinds`` maps each
    column to ``text``, ``json`` (JSON or struct), ``id`` (any other id-capable type) or
    anything else; the document must be text and the metadata column JSON."""
    names = list(kinds)
    id_col = pick_column(
        collection, "id", "id_field", config.id_field, ID_NAMES, names, required=True
    )
    texts = [c for c in names if kinds[c] == "text" and c != id_col]
    doc = pick_column(
        collection,
        "text",
        "document_field",
        config.document_field,
        DOCUMENT_NAMES,
        texts if config.document_field is None else names,
        required=False,
    )
    jsons = [c for c in names if kinds[c] == "json"]
    meta = pick_column(
        collection,
        "metadata",
        "metadata_field",
        config.metadata_field,
        METADATA_NAMES,
        jsons if config.metadata_field is None else names,
        required=False,
    )
    assert id_col is not None
    return ForeignColumns(id=id_col, document=doc, metadata=meta)


def refuse_repeated_keys(
    collection: str,
    key: str,
    nulls: int,
    repeated: Sequence[Any],
    *,
    constraint: str,
    otherwise: str = "",
) -> None:
    """ConfigError, before a record is read, when the id column ``key`` (which nothing
    but ``constraint`` describes) holds a value in several rows or none: keyed by it, a
    copy would merge those records and lose the rows without one. ``otherwise``: another
    way out, for the hint."""
    if repeated:
        problem = f"the same value in several rows (e.g. {', '.join(map(repr, repeated))})"
    elif nulls:
        problem = f"no value (NULL) in {nulls} row(s)"
    else:
        return
    raise ConfigError(
        f"{collection!r}: its id column {key!r} has {constraint} and holds {problem}; "
        "keyed by it, records would be merged or lost, so nothing is read",
        hint=f"name a column whose values identify each row with ?id_field=NAME{otherwise}",
    )


def check_ids(
    collection: str,
    key: str,
    read: Callable[[], Iterable[pa.Array]],
    *,
    shown: Callable[[pa.Array], list[Any]] = lambda a: a.to_pylist(),
    otherwise: str = "",
    nulls_refused: bool = True,
) -> None:
    """``refuse_repeated_keys`` for an engine that keeps no column unique (LanceDB, a
    Parquet file): the ids ``read()`` yields, as 64-bit keys (flat memory at any size);
    read again, whole, only to name the repeats of a collection being refused (``shown``
    turns stored ids into the ids records carry). ``nulls_refused=False``: a record
    without an id is refused on its own (a dead letter), not the collection."""
    from vecmigrate.idkeys import IdKeys  # numpy hashing, loaded by the connectors using it

    keys, nulls = IdKeys(), 0
    for ids in read():
        nulls += ids.null_count
        keys.add(ids.drop_null())
    repeated: list[Any] = []
    if keys.repeated():
        counts = pc.value_counts(pa.concat_arrays([ids.drop_null() for ids in read()]))
        repeated = shown(counts.field("values").filter(pc.greater(counts.field("counts"), 1))[:3])
    refuse_repeated_keys(
        collection,
        key,
        nulls if nulls_refused else 0,
        repeated,
        constraint="no unique constraint",
        otherwise=otherwise,
    )


def sampled_metric(vectors: np.ndarray) -> tuple[Metric, str]:
    """(metric, where it came from) for vectors whose store records no metric: unit
    length throughout means cosine, dot and l2 rank alike, so cosine; otherwise unknown
    (``METRIC_UNKNOWN``, with L2 as a placeholder a copy refuses to use)."""
    if len(vectors) == 0:
        return Metric.COSINE, "no metric stored and no vectors to sample: cosine"
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    if bool(np.all(np.abs(norms - 1) <= UNIT_TOLERANCE)):
        return (
            Metric.COSINE,
            f"no metric stored; the {len(vectors)} vectors sampled are unit length, "
            "so cosine, dot and l2 rank alike: cosine",
        )
    return Metric.L2, METRIC_UNKNOWN
