"""Redis filter compilation: values travel only as query parameters, never in the query text."""

from __future__ import annotations

import pytest

from tests.conftest import require_module
from vecmigrate.errors import ConfigError
from vecmigrate.filters import parse
from vecmigrate.testing.data import sample_schema


def _compile(flt: dict[str, object], missing: bool = True) -> tuple[str, dict[str, str]]:
    require_module("redis")
    from vecmigrate.connectors.redis import Layout, _Query, compile_filter

    schema = sample_schema("c")
    kinds = {"year": "NUMERIC", "score": "NUMERIC"}
    attrs = {m.name: (m.name, kinds.get(m.name, "TAG")) for m in schema.metadata}
    layout = Layout(
        ["c:"], "c:", "document", {}, attrs, {a for a, _ in attrs.values()} if missing else set()
    )
    q = _Query()
    return compile_filter(parse(flt, schema), layout, q), q.params


def test_values_are_parameters_and_semantics_are_explicit() -> None:
    query, params = _compile({"genre": {"$nin": ["x') | *", "@year:[0 1]"]}})
    assert query == "(-ismissing(@genre) -@genre:{$p0 | $p1})"
    assert params == {"p0": "x') | *", "p1": "@year:[0 1]"}
    query, params = _compile({"$not": {"year": {"$gt": 2010}}, "published": True})
    assert query == "(-(@year:[($p0 +inf]) @published:{$p1})"
    assert params == {"p0": "2010.0", "p1": "true"}
    assert _compile({"note": {"$exists": False}})[0] == "ismissing(@note)"


def test_what_redisearch_cannot_say_exactly_is_refused() -> None:
    with pytest.raises(ConfigError, match="cannot express"):
        _compile({"genre": {"$ne": "a"}}, missing=False)  # no INDEXMISSING: presence unknown
    with pytest.raises(ConfigError, match="cannot express"):
        _compile({"year": 2**60})  # NUMERIC is a double
    with pytest.raises(ConfigError, match="cannot express"):
        _compile({"tags": ""})
    assert (
        _compile({"year": {"$ne": 3}}, missing=False)[0] == "(@year:[-inf +inf] -@year:[$p0 $p0])"
    )
