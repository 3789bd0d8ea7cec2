"""The source as ``verify`` and ``diff`` judge a target against it: as it is, or as the
copy's mapping made it (``--map``: renamed, dropped or cast fields, normalised vectors, a
stated metric), and with the metric its searches are judged by.

A source that records no metric (a pgvector column or LanceDB table without a vector
index: each query names one) is judged by the metric the mapping states, else by the
one the target serves (the copy was told it), and is searched with it; both noted in the
report. A mapping that gives records new ids (``uuid5``, ``hash64``) is refused for the
retrieval checks, whose answers are matched id by id; ``diff`` takes it. A re-embedding
is replayed (the model embeds the documents again), as the copy's own check does.
"""

from __future__ import annotations

from dataclasses import dataclass

from vecmigrate.connectors.base import Connector
from vecmigrate.errors import ConfigError, SchemaMismatchError
from vecmigrate.mapping import Mapping, MappingSpec, build_mapping
from vecmigrate.model import CollectionSchema, Metric


@dataclass(frozen=True)
class JudgedSource:
    """``schema``: the source's, its default vector carrying the metric exact search
    ranks by; ``transform``: what the mapping makes of the source records (None: they
    compare as they are); ``served``: the metric the target must serve; ``note``: how the
    metric was chosen where the source records none."""

    schema: CollectionSchema
    transform: Mapping | None
    served: Metric
    note: str | None = None


def source_mapping(
    source: Connector, target: Connector, name: str, tname: str, spec: MappingSpec | None
) -> Mapping | None:
    """``spec`` compiled for ``name`` on ``target`` (None: no mapping)."""
    if spec is None:
        return None
    return build_mapping(
        source.describe(name), target.capabilities, spec, name=tname, source_uri=str(source.uri)
    )


def as_transform(mapping: Mapping | None) -> Mapping | None:
    """What the records are compared through: None where they compare as they are."""
    return None if mapping is None or mapping.is_identity else mapping


def judge_source(
    source: Connector,
    target: Connector,
    name: str,
    tname: str,
    spec: MappingSpec | None,
) -> JudgedSource:
    """The source of ``name`` as ``verify`` judges ``tname`` against it (see module doc)."""
    sa, sb = source.describe(name), target.describe(tname)
    mapping = source_mapping(source, target, name, tname, spec)
    v, note = sa.vector, None
    if spec is not None and spec.id.strategy not in ("keep", "string"):
        raise ConfigError(
            f"{name!r}: the mapping gives the records new ids ({spec.id.strategy}); "
            "verify matches both systems' answers id by id",
            hint="compare the records with `vecmigrate diff --map`; the copy's own check "
            "(copy --verify full) proves the content",
        )
    vspec = spec.vectors.get(v.name) if spec else None
    if mapping is not None:
        rename = vspec.rename if vspec and vspec.rename else v.name
        carried = [t.metric for t in mapping.target.vectors if t.name == rename]
        if not carried or (spec and spec.reembed and spec.reembed.replace == v.name):
            raise SchemaMismatchError(
                f"{name!r}: the mapping does not carry the vector field {v.name!r} that "
                "verify searches (dropped or replaced by a re-embedding)",
                hint="verify compares searches of the vectors both systems hold",
            )
        served = carried[0]
        if not v.metric_known:
            note = f"the source records none; {served.value} as the mapping states"
    elif v.metric_known:
        served = v.metric
    else:
        served = sb.vector.metric
        note = (
            f"the source records none (each query names one); judged by the "
            f"{served.value} the target serves: --map states another"
        )
    if not v.metric_known:
        source.state_metric(name, v.name, served)
    # Normalised on the way, the target ranks as cosine ranks the source's vectors.
    ranked = Metric.COSINE if vspec is not None and vspec.normalize else served
    vectors = tuple(
        f.model_copy(update={"metric": ranked}) if f.name == v.name else f for f in sa.vectors
    )
    return JudgedSource(sa.replace(vectors=vectors), as_transform(mapping), served, note)
