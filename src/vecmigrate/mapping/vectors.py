"""Per-vector-field decisions of a mapping: metric translation and index choice."""

from __future__ import annotations

from vecmigrate.errors import SchemaMismatchError
from vecmigrate.model import Capabilities, IndexSpec, Metric, VectorField


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
