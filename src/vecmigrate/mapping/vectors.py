"""Per-vector-field decisions of a mapping: metric translation and index choice, for dense
and sparse fields."""

from __future__ import annotations

from typing import TypeVar

from vecmigrate.errors import SchemaMismatchError
from vecmigrate.mapping.spec import VectorSpec
from vecmigrate.model import Capabilities, IndexSpec, Metric, SparseField, VectorField


def metric_decision(
    v: VectorField, want: Metric, force: bool, caps: Capabilities
) -> tuple[str, bool]:
    """A metric change: (decision text, whether unit vectors are required)."""
    if want not in caps.metrics:
        raise SchemaMismatchError(f"the target has no {want.value} metric for {v.name!r}")
    if want == v.metric:
        return f"{v.name}: metric {v.metric.value} kept", False
    pair = {v.metric, want}
    if pair == {Metric.COSINE, Metric.DOT}:
        return (
            f"{v.name}: metric {v.metric.value} -> {want.value}: same ranking for unit vectors; "
            "every vector is checked and refused if its norm is not 1"
        ), True
    if force:
        return (
            f"{v.name}: metric {v.metric.value} -> {want.value} FORCED: rankings will differ",
            False,
        )
    raise SchemaMismatchError(
        f"{v.name}: {v.metric.value} -> {want.value} changes which neighbours are nearest",
        hint="set force_metric: true in the mapping if that is what you want",
    )


def index_decision(
    v: VectorField, spec_index: IndexSpec | None, caps: Capabilities
) -> tuple[IndexSpec | None, str, str | None]:
    """The target index: (index, decision text, warning when it has no equivalent)."""
    wanted = spec_index or v.index
    if wanted is None or wanted.kind in ("auto", "none"):
        return (
            wanted,
            f"{v.name}: index {'engine default' if wanted is None else wanted.kind}",
            None,
        )
    if wanted.kind in caps.index_kinds:
        return wanted, f"{v.name}: index {wanted.kind} {dict(wanted.params) or ''}".rstrip(), None
    fallback = (
        "hnsw" if "hnsw" in caps.index_kinds else "flat" if "flat" in caps.index_kinds else "auto"
    )
    warning = (
        f"{v.name}: the target has no {wanted.kind} index; using {fallback} "
        f"(parameters {dict(wanted.params)} not carried)"
    )
    return IndexSpec(kind=fallback), f"{v.name}: index {wanted.kind} -> {fallback}", warning  # type: ignore[arg-type]


Field = TypeVar("Field", VectorField, SparseField)


def stated_metric(collection: str, f: Field, stated: Metric | None, kind: str, why: str) -> Field:
    """``f`` (whose metric nothing records) with the metric the mapping states; refused,
    naming the field and the line that fixes it, when it states none."""
    if stated is None:
        raise SchemaMismatchError(
            f"{collection!r}: nothing records the metric of {kind} {f.name!r} {why}",
            hint=f"state it in the mapping: vectors: {{{f.name}: {{metric: l2}}}} "
            "(or cosine, dot: the metric the application searches with)",
        )
    return f.model_copy(update={"metric": stated, "metric_source": "the mapping"})


def sparse_decision(
    collection: str, sp: SparseField, spec: VectorSpec | None, caps: Capabilities
) -> tuple[SparseField, str]:
    """The target's sparse field and the decision text: the metric the source searches
    with (stated in the mapping where nothing records it), kept where the target has it;
    another only with ``force_metric`` (rankings change)."""
    spec = spec or VectorSpec()
    unsupported = [k for k in ("rename", "normalize", "index") if k in spec.model_fields_set]
    if unsupported:
        raise SchemaMismatchError(
            f"{collection!r}: sparse field {sp.name!r} takes only metric, force_metric and "
            f"drop in a mapping, not {', '.join(unsupported)}",
            hint=f"remove {', '.join(unsupported)} from vectors.{sp.name}",
        )
    if not sp.metric_known:
        sp = stated_metric(collection, sp, spec.metric, "sparse field", "(no index on it)")
    want = spec.metric or sp.metric
    can = ", ".join(sorted(m.value for m in caps.sparse_metrics))
    if want not in caps.sparse_metrics:
        raise SchemaMismatchError(
            f"the target searches sparse field {sp.name!r} by {can} only, not {want.value}",
            hint=f"vectors: {{{sp.name}: {{metric: {sorted(caps.sparse_metrics)[0].value}, "
            "force_metric: true}} in the mapping if rankings may change",
        )
    if sp.modifier and sp.modifier not in caps.sparse_modifiers:
        if not spec.force_metric:
            raise SchemaMismatchError(
                f"sparse field {sp.name!r} is weighted by {sp.modifier.upper()} when scored "
                "(Qdrant's modifier: BM25); the target scores the stored values as they are",
                hint=f"vectors: {{{sp.name}: {{force_metric: true}}}} in the mapping to copy "
                "them unweighted (rankings change), or drop: true",
            )
        sp = sp.model_copy(update={"modifier": None})
        if want == sp.metric:
            return sp, f"{sp.name}: sparse, IDF weighting dropped (FORCED): rankings differ"
    if want == sp.metric:
        return sp, f"{sp.name}: sparse, metric {want.value} kept"
    if not spec.force_metric:
        raise SchemaMismatchError(
            f"sparse field {sp.name!r}: {sp.metric.value} -> {want.value} changes which "
            "neighbours are nearest",
            hint="set force_metric: true in the mapping if that is what you want",
        )
    text = f"{sp.name}: sparse, metric {sp.metric.value} -> {want.value} FORCED: rankings differ"
    return sp.model_copy(update={"metric": want}), text
