"""Query DSL, sorting, ``search_after``, kNN and ``_source`` filtering of the
Elasticsearch / OpenSearch protocol test double (see ``search_server.py``)."""

from __future__ import annotations

import json
import uuid
from bisect import bisect_right
from functools import cmp_to_key
from typing import Any

from tests.protocol.search_common import (
    _SEARCH_KEYS,
    MAX_WINDOW,
    ApiFailure,
    Index,
    State,
    _score,
    _values,
)


class Queries(State):
    """Searches and counts over the refreshed (or PIT) view."""

    def _field_spec(self, idx: Index, field: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"properties": idx.props}
        for part in field.split("."):
            spec = (
                (spec.get("properties") or {}).get(part)
                or (spec.get("fields") or {}).get(part)
                or {}
            )
        return spec

    def _doc_values(self, idx: Index, field: str, src: dict[str, Any]) -> list[Any]:
        # Walk object paths ("metadata.source"); a multi-field ("title.keyword") reads its
        # parent's value.
        value: Any = src
        for part in field.split("."):
            if not isinstance(value, dict):
                break
            value = value.get(part)
        return _values(value)

    def _coerce(self, spec: dict[str, Any], v: Any) -> Any:
        t = spec.get("type")
        if t in ("long", "integer", "double", "float"):
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
        if t == "boolean":
            return v if isinstance(v, bool) else {"true": True, "false": False}.get(str(v), v)
        if t == "keyword":
            return json.dumps(v) if isinstance(v, bool) else str(v)
        return v

    def _match(self, idx: Index, q: Any, rid: str, src: dict[str, Any]) -> bool:
        if q is None:
            return True
        if not isinstance(q, dict) or len(q) != 1:
            raise ApiFailure(
                400, "parsing_exception", "[_na] query malformed, must start with start_object"
            )
        ((kind, arg),) = q.items()
        if kind == "match_all":
            return True
        if kind == "match_none":
            return False
        if kind == "bool":
            unknown = set(arg) - {
                "must",
                "filter",
                "should",
                "must_not",
                "minimum_should_match",
                "boost",
            }
            if unknown:
                raise ApiFailure(
                    400,
                    "parsing_exception",
                    f"[bool] query does not support [{sorted(unknown)[0]}]",
                )

            def as_list(x: Any) -> list[Any]:
                return x if isinstance(x, list) else ([x] if x else [])

            must = as_list(arg.get("must")) + as_list(arg.get("filter"))
            should = as_list(arg.get("should"))
            if not all(self._match(idx, c, rid, src) for c in must):
                return False
            if any(self._match(idx, c, rid, src) for c in as_list(arg.get("must_not"))):
                return False
            msm = int(arg.get("minimum_should_match", 0 if must else 1))
            return not should or sum(self._match(idx, c, rid, src) for c in should) >= msm
        if kind == "ids":
            return rid in {str(x) for x in arg.get("values", [])}
        if kind == "exists":
            return bool(self._doc_values(idx, arg["field"], src))
        if kind in ("term", "terms", "range"):
            ((field, spec_arg),) = ((k, v) for k, v in arg.items() if k != "boost")
            spec = self._field_spec(idx, field)
            have = [self._coerce(spec, v) for v in self._doc_values(idx, field, src)]
            if spec.get("type") == "text":
                have = [w for h in have for w in str(h).lower().split()]
            if kind == "term":
                value = spec_arg["value"] if isinstance(spec_arg, dict) else spec_arg
                return self._coerce(spec, value) in have
            if kind == "terms":
                if not isinstance(spec_arg, list):
                    raise ApiFailure(
                        400, "parsing_exception", "[terms] query does not support [" + field + "]"
                    )
                return any(self._coerce(spec, v) in have for v in spec_arg)
            ops = {
                "gt": lambda a, b: a > b,
                "gte": lambda a, b: a >= b,
                "lt": lambda a, b: a < b,
                "lte": lambda a, b: a <= b,
            }
            bounds = [(ops[o], self._coerce(spec, b)) for o, b in spec_arg.items() if o in ops]
            return any(all(f(h, b) for f, b in bounds) for h in have)
        raise ApiFailure(400, "parsing_exception", f"unknown query [{kind}]")

    def _search(self, idx: Index | None, body: Any) -> dict[str, Any]:
        body = body or {}
        unknown = set(body) - _SEARCH_KEYS - (set() if self.es else {"knn"})
        if unknown or (not self.es and "knn" in body):
            key = sorted(unknown or {"knn"})[0]
            raise ApiFailure(
                400, "parsing_exception", f"Unknown key for a START_OBJECT in [{key}]."
            )
        pit = body.get("pit")
        if pit is not None:
            if idx is not None:
                raise ApiFailure(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: [indices] cannot be used with point in time. Do "
                    "not specify any index with point in time.;",
                )
            entry = self.pits.get(pit.get("id"))
            if entry is None:
                raise ApiFailure(
                    404,
                    "search_context_missing_exception",
                    f"No search context found for id [{pit.get('id')}]",
                )
            idx = self._get(entry[0])
            docs = entry[1]
        elif idx is None:
            raise ApiFailure(
                400,
                "illegal_argument_exception",
                "searching all indexes is not supported by this double",
            )
        else:
            docs = idx.searchable
        size, start = int(body.get("size", 10)), int(body.get("from", 0))
        if size + start > MAX_WINDOW:
            raise ApiFailure(
                400,
                "illegal_argument_exception",
                "Result window is too large, from + size must be less than or equal to: "
                f"[{MAX_WINDOW}] but was [{size + start}].",
            )
        query = body.get("query")
        knn = body.get("knn") if self.es else None
        os_knn = query.get("knn") if isinstance(query, dict) and not self.es else None
        sort = body.get("sort")
        sort = sort if isinstance(sort, list) else ([sort] if sort else [])
        if (
            pit is not None
            and self.es
            and "_shard_doc" not in [s if isinstance(s, str) else next(iter(s)) for s in sort]
        ):
            sort = [*sort, "_shard_doc"]  # ES's implicit PIT tiebreaker
        after = body.get("search_after")
        if after is not None and not sort:
            raise ApiFailure(
                400, "illegal_argument_exception", "[search_after] can only be used with a sort"
            )
        if after is not None and len(after) != len(sort):
            raise ApiFailure(
                400,
                "illegal_argument_exception",
                f"search_after has {len(after)} value(s) but sort has {len(sort)}.",
            )
        # A PIT is frozen: its ordered rows are computed once per query, slice and sort.
        key = json.dumps([query, knn, body.get("slice"), sort], sort_keys=True)
        cache = self.pit_rows.setdefault(pit["id"], {}) if pit is not None else {}
        rows = cache.get(key)
        if rows is None:
            rows = self._ordered(idx, docs, body, query, knn, os_knn, sort)
            cache[key] = rows
        total = len(rows)
        ordered = rows
        if after is not None:
            order = cmp_to_key(lambda x, y: self._cmp(x, y, sort))
            ordered = rows[bisect_right(rows, order(after), key=lambda r: order(r[0])) :]
        page = ordered[start : start + size]
        hits = []
        for values, (score, _num, rid, src) in page:
            hit: dict[str, Any] = {
                "_index": idx.name,
                "_id": rid,
                "_score": None if sort else score,
            }
            source = self._filter_source(idx, src, body.get("_source", True))
            if source is not None:
                hit["_source"] = source
            if sort:
                hit["sort"] = values
            hits.append(hit)
        out: dict[str, Any] = {
            "took": 1,
            "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        }
        if pit is not None:
            out["pit_id"] = pit["id"]
        hits_obj: dict[str, Any] = {
            "max_score": None if sort or not page else max(h["_score"] for h in hits),
            "hits": hits,
        }
        if body.get("track_total_hits", True) is not False:
            hits_obj["total"] = {"value": total, "relation": "eq"}
        out["hits"] = hits_obj
        return out

    def _ordered(
        self,
        idx: Index,
        docs: dict[str, tuple[int, dict[str, Any]]],
        body: dict[str, Any],
        query: Any,
        knn: Any,
        os_knn: Any,
        sort: list[Any],
    ) -> list[tuple[list[Any], tuple[float, int, str, dict[str, Any]]]]:
        """Matching rows with their sort values, in result order."""
        scored: list[tuple[float, int, str, dict[str, Any]]] = []
        if knn is not None or os_knn is not None:
            scored = self._knn(idx, docs, knn, os_knn, query if knn is not None else None)
        else:
            for rid, (num, src) in docs.items():
                if self._match(idx, query, rid, src):
                    scored.append((1.0, num, rid, src))
        if "slice" in body:
            sl = body["slice"]
            scored = [
                s
                for s in scored
                if int(uuid.uuid5(uuid.NAMESPACE_OID, s[2]).int) % int(sl["max"]) == int(sl["id"])
            ]
        if not sort:
            return [([], s) for s in sorted(scored, key=lambda s: (-s[0], s[1]))]
        order = cmp_to_key(lambda x, y: self._cmp(x, y, sort))
        rows = [(self._sort_values(idx, sort, s), s) for s in scored]
        rows.sort(key=lambda r: order(r[0]))
        return rows

    def _knn(
        self, idx: Index, docs: dict[str, Any], knn: Any, os_knn: Any, query: Any
    ) -> list[tuple[float, int, str, dict[str, Any]]]:
        if knn is not None:
            field, vector, k = knn.get("field"), knn.get("query_vector"), int(knn.get("k", 10))
            cands = int(knn.get("num_candidates", max(k, 100)))
            if cands < k:
                raise ApiFailure(
                    400, "illegal_argument_exception", "[num_candidates] cannot be less than [k]"
                )
            if cands > 10_000:
                raise ApiFailure(
                    400, "illegal_argument_exception", "[num_candidates] cannot exceed [10000]"
                )
            flt = knn.get("filter")
            filters = flt if isinstance(flt, list) else ([flt] if flt else [])
            spec = idx.props.get(field) or {}
            if spec.get("type") != "dense_vector":
                raise ApiFailure(
                    400,
                    "illegal_argument_exception",
                    "[knn] queries are only supported on [dense_vector] fields, field "
                    f"[{field}] is not",
                )
            similarity = spec.get("similarity", "cosine")
        else:
            ((field, arg),) = os_knn.items()
            vector, k = arg.get("vector"), int(arg.get("k", 10))
            filters = [arg["filter"]] if arg.get("filter") else []
            spec = idx.props.get(field) or {}
            if spec.get("type") != "knn_vector":
                raise ApiFailure(
                    400, "illegal_argument_exception", f"Field '{field}' is not knn_vector type."
                )
            similarity = (spec.get("method") or {}).get("space_type") or spec.get(
                "space_type", "l2"
            )
        dims = int(spec.get("dims") or spec.get("dimension"))
        if not isinstance(vector, list) or len(vector) != dims:
            raise ApiFailure(
                400,
                "illegal_argument_exception",
                f"the query vector has a different number of dimensions [{len(vector or [])}] "
                f"than the document vectors [{dims}]",
            )
        scored = []
        for rid, (num, src) in docs.items():
            v = src.get(field)
            if isinstance(v, list) and all(self._match(idx, f, rid, src) for f in filters):
                scored.append((_score(similarity, vector, v), num, rid, src))
        scored.sort(key=lambda s: (-s[0], s[1]))
        scored = scored[:k]
        if query is not None:  # ES: knn hits combined with a query; only match_all-like here
            scored = [s for s in scored if self._match(idx, query, s[2], s[3])]
        return scored

    @staticmethod
    def _order(s: Any) -> str:
        if isinstance(s, str):
            return "desc" if s == "_score" else "asc"
        ((_, v),) = s.items()
        return str(v.get("order", "asc") if isinstance(v, dict) else v)

    def _sort_values(
        self, idx: Index, sort: list[Any], row: tuple[float, int, str, dict[str, Any]]
    ) -> list[Any]:
        score, num, rid, src = row
        out: list[Any] = []
        for s in sort:
            field = s if isinstance(s, str) else next(iter(s))
            if field in ("_shard_doc", "_doc"):
                out.append(num)
            elif field == "_score":
                out.append(score)
            elif field == "_id":
                if self.es:
                    raise ApiFailure(
                        400,
                        "illegal_argument_exception",
                        "Fielddata access on the _id field is disallowed, you can re-enable "
                        "it by updating the dynamic cluster setting: "
                        "indices.id_field_data.enabled",
                    )
                out.append(rid)
            else:
                spec = self._field_spec(idx, field)
                if spec.get("type") == "text":
                    raise ApiFailure(
                        400,
                        "illegal_argument_exception",
                        "Text fields are not optimised for operations that require "
                        "per-document field data like aggregations and sorting, so these "
                        "operations are disabled by default. Please use a keyword field "
                        f"instead. [{field}]",
                    )
                vals = self._doc_values(idx, field, src)
                out.append(min(vals) if vals else None)
        return out

    def _cmp(self, values: list[Any], other: list[Any], sort: list[Any]) -> int:
        """Compare two rows of sort values; missing values sort last in both orders."""
        for v, a, s in zip(values, other, sort, strict=True):
            if v == a:
                continue
            if v is None or a is None:
                return 1 if v is None else -1
            less = v < a if self._order(s) == "asc" else v > a
            return -1 if less else 1
        return 0

    def _filter_source(self, idx: Index, src: dict[str, Any], spec: Any) -> dict[str, Any] | None:
        includes: list[str] | None = None
        excludes: list[str] = []
        # ES 9.2: index.mapping.exclude_source_vectors defaults to true for new indexes.
        exclude_vectors = self.es and self.vtuple >= (9, 2)
        if spec is False:
            return None
        if isinstance(spec, str):
            includes = [spec]
        elif isinstance(spec, list):
            includes = spec
        elif isinstance(spec, dict):
            allowed = {"includes", "excludes", "include", "exclude"} | (
                {"exclude_vectors"} if self.es and self.vtuple >= (9, 1) else set()
            )
            if set(spec) - allowed:
                raise ApiFailure(
                    400,
                    "parsing_exception",
                    f"Unknown key for a VALUE_BOOLEAN in [{sorted(set(spec) - allowed)[0]}].",
                )
            includes = spec.get("includes", spec.get("include"))
            excludes = list(spec.get("excludes", spec.get("exclude", [])))
            exclude_vectors = (
                bool(spec.get("exclude_vectors", exclude_vectors)) if self.es else False
            )
        out = {}
        for k, v in src.items():
            if includes is not None and k not in includes:
                continue
            if k in excludes:
                continue
            if (
                exclude_vectors
                and (idx.props.get(k) or {}).get("type") == "dense_vector"
                and (includes is None or k not in includes)
            ):
                continue
            out[k] = v
        return out
