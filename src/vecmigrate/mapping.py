"""Schema mapping from a source collection to a target engine.

This is the minimal, lossless mapping the copy pipeline needs: rename, id type where
the target cannot store the source's (int -> string only, which round-trips), and a
clear refusal for anything that would need an explicit decision (metric, named vectors).
"""

from __future__ import annotations

from datetime import datetime, timezone

from vecmigrate.errors import SchemaMismatchError
from vecmigrate.model import Capabilities, CollectionSchema, IdType


def target_schema_for(
    source: CollectionSchema,
    capabilities: Capabilities,
    *,
    name: str,
    source_engine: str,
    source_uri: str,
) -> CollectionSchema:
    """The schema to create on the target; refuses what cannot be carried losslessly."""
    id_type = source.id_type
    if id_type not in capabilities.id_types:
        if IdType.STRING in capabilities.id_types and id_type is not IdType.STRING:
            id_type = IdType.STRING
        else:
            raise SchemaMismatchError(
                f"the target cannot store {source.id_type.value} ids of {source.name!r}",
                hint="an id strategy (uuid5 or hash) in a mapping file is needed",
            )
    for v in source.vectors:
        if v.metric not in capabilities.metrics:
            raise SchemaMismatchError(
                f"the target has no {v.metric.value} metric for vector field {v.name!r}",
                hint="choose a metric explicitly in a mapping file",
            )
    if len(source.vectors) > 1 and not capabilities.named_vectors:
        raise SchemaMismatchError(
            f"{source.name!r} has {len(source.vectors)} vector fields; the target stores one",
            hint="map the named vectors to separate collections in a mapping file",
        )
    if source.sparse and not capabilities.sparse_vectors:
        raise SchemaMismatchError(f"the target cannot store sparse vectors of {source.name!r}")
    if source.namespaces is not None and not capabilities.namespaces:
        raise SchemaMismatchError(
            f"the target has no namespaces for {source.name!r}",
            hint="map namespaces to collections or a metadata field in a mapping file",
        )
    provenance = dict(source.provenance) or {
        "source_engine": source_engine,
        "source_uri": source_uri,
        "source_collection": source.name,
        "copied_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return source.replace(name=name, id_type=id_type, provenance=provenance)
