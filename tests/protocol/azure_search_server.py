"""An Azure AI Search **protocol test double** — not Azure AI Search.

Azure AI Search is a hosted service; nothing can run it on this machine. The connector's
tests drive the official ``azure-search-documents`` clients (pointed here with
``base_url``) over real HTTP against this small stdlib server on 127.0.0.1, which
implements, in memory, only the endpoints the connector calls: list / create / get /
delete indexes (``/indexes``, ``/indexes('name')``), ``docs/$count``, ``docs('key')``,
``docs/search.post.search`` and ``docs/search.index``.

**Checked against the client's generated models.** Every request body is validated against
the client's own request model (``SearchIndex``, ``SearchRequest``, ``IndexDocumentsBatch``)
and every response against its response model (``azure_search_model.py``): a request that
breaks them is answered 400 and recorded; a response that breaks them is a bug of this
double, answered 500 and recorded. ``take_violations()`` returns them, so a test run fails
when the double or the connector drifts from the API the client defines.

**Semantics from Azure AI Search's documentation** (REST API reference, "Service limits",
"OData $filter syntax", "Vector relevance"), where the models say nothing; they are this
double's reading of it, not observed behaviour:

* the ``api-key`` header must carry the double's key (else 403); ``api-version`` is required;
* index names: 2-128 lowercase letters, digits and single dashes; field names a letter then
  letters, digits, ``_``; exactly one ``Edm.String`` key field; a vector field is
  ``Collection(Edm.Single)`` with 2-4,096 ``dimensions`` and an existing profile whose
  algorithm exists; at most 1,000 fields; creating an existing index is a 409;
* keys: letters, digits, ``_ - =``, not starting with ``_``, at most 1,024 characters;
  ``upload`` replaces a document, ``merge`` updates the given fields of an existing one
  (404 in its result when missing), ``mergeOrUpload`` either, ``delete`` of a missing key
  succeeds; a refused document is a per-document result (HTTP 207 for the batch); at most
  1,000 actions and 16 MB a request (413);
* values must fit their field's type (collections hold no nulls); absent fields read null
  (collections: ``[]``);
* ``$filter``: ``eq ne gt ge lt le`` (a comparison with null is false, except ``ne`` which is
  true: OData's reading), ``and or not``, parentheses, ``search.in(field, 'a,b', ',')``,
  ``field/any(x: ...)`` on collections, literals ``'..'`` (``''`` escapes a quote), numbers,
  ``true false null``; only filterable fields may be filtered, only sortable ones ordered;
* search: ``search`` ``*`` or absent, ``$top`` (default 50, at most 1,000 here),
  ``$skip`` (at most 100,000), ``$orderby`` ``field asc|desc`` (ties by key), ``$select``,
  ``count``; a vector query (``kind: vector``) is exact kNN over the filtered documents
  (``preFilter``; ``postFilter`` filters the global top k), scored as Azure documents:
  cosine ``1/(1+(1-cos))``, euclidean ``1/(1+d)``, dotProduct ``1+dp`` (``1/(1-dp)`` when
  negative); results by score, ties by key;
* writes are visible at once;
* failures (any status) are injected on demand with ``fail(status, times, op=...)``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.protocol import azure_search_model as model
from tests.protocol.httpdouble import DoubleHandler, StatusFailureDouble

MAX_TOP = 1_000
MAX_SKIP = 100_000
MAX_ACTIONS = 1_000
MAX_BODY = 16 * 1024 * 1024
MAX_DIM = 4_096
MAX_FIELDS = 1_000
_INDEX = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){1,127}$")
_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
_KEY = re.compile(r"^[A-Za-z0-9=-][A-Za-z0-9_=-]{0,1023}$")
VECTOR_TYPE = "Collection(Edm.Single)"
_SCALARS = {"Edm.String", "Edm.Int32", "Edm.Int64", "Edm.Double", "Edm.Boolean"}


class ApiFailure(Exception):
    """An error answer: HTTP status and Azure's ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or {400: "InvalidRequest", 404: "ResourceNotFound"}.get(status, "Error")


def _bad(message: str) -> ApiFailure:
    return ApiFailure(400, message)


@dataclass
class IndexState:
    """One index: its definition and documents (key -> fields)."""

    definition: dict[str, Any]
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    etag: int = 1

    @property
    def fields(self) -> dict[str, dict[str, Any]]:
        return {f["name"]: f for f in self.definition["fields"]}

    @property
    def key(self) -> str:
        return next(f["name"] for f in self.definition["fields"] if f.get("key"))

    def metric(self, vector_field: str) -> str:
        f = self.fields[vector_field]
        search = self.definition.get("vectorSearch") or {}
        profile = next(p for p in search["profiles"] if p["name"] == f["vectorSearchProfile"])
        algo = next(a for a in search["algorithms"] if a["name"] == profile["algorithm"])
        params = algo.get("hnswParameters") or algo.get("exhaustiveKnnParameters") or {}
        return str(params.get("metric") or "cosine")


def _fits(value: Any, t: str) -> bool:
    if value is None:
        return True
    if t.startswith("Collection("):
        inner = t[len("Collection(") : -1]
        return isinstance(value, list) and all(x is not None and _fits(x, inner) for x in value)
    if t == "Edm.String":
        return isinstance(value, str)
    if t == "Edm.Boolean":
        return isinstance(value, bool)
    if t in ("Edm.Int32", "Edm.Int64"):
        bound = 2**31 if t == "Edm.Int32" else 2**63
        return isinstance(value, int) and not isinstance(value, bool) and -bound <= value < bound
    if t in ("Edm.Double", "Edm.Single"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok and math.isfinite(value)
    return False


# -- OData $filter ------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_.]*)|(?P<punct>[(),:/]))"
)
_CMP = {"eq", "ne", "gt", "ge", "lt", "le"}


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise _bad(f"Invalid expression: cannot parse $filter at {text[pos : pos + 20]!r}")
        pos = m.end()
        if m.group("str") is not None:
            out.append(("lit", m.group("str")[1:-1].replace("''", "'")))
        elif m.group("num") is not None:
            raw = m.group("num")
            out.append(("lit", float(raw) if any(c in raw for c in ".eE") else int(raw)))
        elif m.group("name") is not None:
            word = m.group("name")
            if word in ("true", "false"):
                out.append(("lit", word == "true"))
            elif word == "null":
                out.append(("lit", None))
            else:
                out.append(("name", word))
        else:
            out.append(("punct", m.group("punct")))
    return out


class _Filter:
    """A parsed ``$filter``: a predicate over a document, fields checked against the index."""

    def __init__(self, text: str, index: IndexState) -> None:
        self.toks = _tokens(text)
        self.i = 0
        self.index = index
        self.fields = index.fields
        self.pred = self._or(set())
        if self.i != len(self.toks):
            raise _bad(f"Invalid expression: unexpected {self.toks[self.i][1]!r} in $filter")

    def _peek(self) -> tuple[str, Any] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _take(self, kind: str, value: Any = None) -> Any:
        tok = self._peek()
        if tok is None or tok[0] != kind or (value is not None and tok[1] != value):
            raise _bad(f"Invalid expression: expected {value or kind} in $filter, got {tok}")
        self.i += 1
        return tok[1]

    def _or(self, scope: set[str]) -> Any:
        parts = [self._and(scope)]
        while self._peek() == ("name", "or"):
            self.i += 1
            parts.append(self._and(scope))
        return parts[0] if len(parts) == 1 else (lambda d, env: any(p(d, env) for p in parts))

    def _and(self, scope: set[str]) -> Any:
        parts = [self._unary(scope)]
        while self._peek() == ("name", "and"):
            self.i += 1
            parts.append(self._unary(scope))
        return parts[0] if len(parts) == 1 else (lambda d, env: all(p(d, env) for p in parts))

    def _unary(self, scope: set[str]) -> Any:
        if self._peek() == ("name", "not"):
            self.i += 1
            inner = self._unary(scope)
            return lambda d, env: not inner(d, env)
        return self._primary(scope)

    def _field(self, name: str) -> dict[str, Any]:
        f = self.fields.get(name)
        if f is None:
            raise _bad(f"Invalid expression: Could not find a property named '{name}'")
        if not f.get("filterable", True) or f["type"] == VECTOR_TYPE:
            raise _bad(f"Invalid expression: '{name}' is not a filterable field")
        return f

    def _primary(self, scope: set[str]) -> Any:
        tok = self._peek()
        if tok == ("punct", "("):
            self.i += 1
            inner = self._or(scope)
            self._take("punct", ")")
            return inner
        if tok is not None and tok[0] == "lit" and isinstance(tok[1], bool):
            self.i += 1
            value = tok[1]
            return lambda d, env: value
        if tok == ("name", "search.in"):
            self.i += 1
            self._take("punct", "(")
            name = self._take("name")
            self._field(name)
            self._take("punct", ",")
            values = self._take("lit")
            delim = " ,"
            if self._peek() == ("punct", ","):
                self.i += 1
                delim = self._take("lit")
            self._take("punct", ")")
            if not isinstance(values, str):
                raise _bad("Invalid expression: search.in takes a string of values")
            wanted = set(re.split("|".join(map(re.escape, delim)), values)) - {""}
            return lambda d, env: d.get(name) in wanted
        name = self._take("name")
        if self._peek() == ("punct", "/"):
            self.i += 1
            f = self._field(name)
            if not f["type"].startswith("Collection("):
                raise _bad(f"Invalid expression: any() on '{name}', which is not a collection")
            self._take("name", "any")
            self._take("punct", "(")
            var = self._take("name")
            self._take("punct", ":")
            body = self._or(scope | {var})
            self._take("punct", ")")
            return lambda d, env: any(body(d, {**env, var: x}) for x in d.get(name) or [])
        if name not in scope:
            f = self._field(name)
            if f["type"].startswith("Collection("):
                raise _bad(f"Invalid expression: compare collection '{name}' with any()")
        op = self._take("name")
        if op not in _CMP:
            raise _bad(f"Invalid expression: unknown operator {op!r}")
        value = self._take("lit")

        def compare(d: dict[str, Any], env: dict[str, Any]) -> bool:
            got = env[name] if name in env else d.get(name)
            return _compare(got, op, value)

        return compare


def _compare(got: Any, op: str, value: Any) -> bool:
    if op == "eq":
        return bool(got == value and (got is None) == (value is None))
    if op == "ne":
        return not _compare(got, "eq", value)
    if got is None or value is None or isinstance(got, bool) != isinstance(value, bool):
        return False
    if isinstance(got, str) != isinstance(value, str):
        raise _bad(f"Invalid expression: cannot compare {got!r} with {value!r}")
    return {"gt": got > value, "ge": got >= value, "lt": got < value, "le": got <= value}[op]


def _score(metric: str, q: list[float], v: list[float]) -> float:
    if metric == "euclidean":
        return 1.0 / (1.0 + math.sqrt(sum((a - b) ** 2 for a, b in zip(q, v, strict=True))))
    dot = sum(a * b for a, b in zip(q, v, strict=True))
    if metric == "dotProduct":
        return 1.0 + dot if dot >= 0 else 1.0 / (1.0 - dot)
    nq = math.sqrt(sum(a * a for a in q))
    nv = math.sqrt(sum(b * b for b in v))
    cos = dot / (nq * nv) if nq and nv else 0.0
    return 1.0 / (1.0 + (1.0 - cos))


class AzureSearchServer(StatusFailureDouble):
    """The REST API of one search service on one port (``url`` is what ``?base_url=`` points
    at)."""

    requests: list[tuple[str, int, Any]]  # (operation, HTTP status, body)

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.indexes: dict[str, IndexState] = {}
        super().__init__()

    # -- HTTP -------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(DoubleHandler):
            def _serve(self, method: str) -> None:
                status, payload = server.handle(
                    method, self.path, dict(self.headers.items()), self._body()
                )
                if payload is None:
                    raw = b""
                elif isinstance(payload, int) and not isinstance(payload, bool):
                    raw = str(payload).encode()
                else:
                    raw = json.dumps(payload).encode()
                self.send_response(status)
                if raw:
                    ctype = "text/plain" if isinstance(payload, int) else "application/json"
                    self.send_header("Content-Type", f"{ctype}; charset=utf-8")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_PUT(self) -> None:
                self._serve("PUT")

        return Handler

    def handle(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any]:
        """One request: (status, JSON payload or None)."""
        parts = urlsplit(target)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        found = model.route(method, path)
        op = found[0].op if found else f"{method} {path}"
        body: Any = None
        try:
            if found is None:
                raise ApiFailure(404, f"no such endpoint: {method} {path}")
            if {k.lower(): v for k, v in headers.items()}.get("api-key") != self.api_key:
                raise ApiFailure(403, "Authorization failed.", "Forbidden")
            if "api-version" not in query:
                raise _bad("The api-version query parameter (?api-version=) is required")
            injected = self._injected(op)
            if injected is not None:
                raise ApiFailure(injected, f"injected failure {injected}")
            endpoint, params = found
            if len(raw) > MAX_BODY:
                raise ApiFailure(413, "The request is too large", "RequestEntityTooLarge")
            if endpoint.request is not None:
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    raise _bad("The request body is not valid JSON") from None
                problems = model.check(
                    endpoint.request, body, endpoint.request.__name__, request=True
                )
                if problems:
                    with self.lock:
                        self.model_violations += [f"{op} request: {p}" for p in problems]
                    raise _bad("; ".join(problems))
            with self.lock:
                status, payload = self._dispatch(op, params, query, body)
            problems = endpoint.response(payload) if status < 300 and status != 204 else []
            if problems:
                with self.lock:
                    self.model_violations += [f"{op} response: {p}" for p in problems]
                raise ApiFailure(500, "the double broke the response model: " + "; ".join(problems))
        except ApiFailure as exc:
            status = exc.status
            payload = {"error": {"code": exc.code, "message": exc.message}}
            problems = model.error_violations(payload)
            if problems:
                with self.lock:
                    self.model_violations += [f"{op} error: {p}" for p in problems]
        with self.lock:
            self.requests.append((op, status, body))
        return status, payload

    # -- operations -------------------------------------------------------------------------
    def _index(self, name: str) -> IndexState:
        state = self.indexes.get(name)
        if state is None:
            raise ApiFailure(404, f"No index with the name '{name}' was found in the service.")
        return state

    def _dispatch(
        self, op: str, params: dict[str, str], query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        if op == "list_indexes":
            select = query.get("$select")
            items = [self._definition(s) for _, s in sorted(self.indexes.items())]
            if select:
                keep = {s.strip() for s in select.split(",")}
                items = [{k: v for k, v in d.items() if k in keep} for d in items]
            return 200, {"value": items}
        if op == "create_index":
            return 201, self._create(body)
        name = params["index"]
        if op == "get_index":
            return 200, self._definition(self._index(name))
        if op == "delete_index":
            self._index(name)
            del self.indexes[name]
            return 204, None
        state = self._index(name)
        if op == "count":
            return 200, len(state.docs)
        if op == "get_document":
            doc = state.docs.get(params["key"])
            if doc is None:
                raise ApiFailure(404, f"Document '{params['key']}' was not found")
            select = query.get("$select")
            return 200, self._project(state, doc, select.split(",") if select else None)
        if op == "search":
            return 200, self._search(state, body)
        if op == "index":
            return self._write(state, body)
        raise ApiFailure(404, f"no such operation {op}")

    def _definition(self, state: IndexState) -> dict[str, Any]:
        return {**state.definition, "@odata.etag": f'"0x{state.etag:X}"'}

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["name"]
        if not _INDEX.match(name):
            raise _bad(f"Invalid index name '{name}'")
        if name in self.indexes:
            raise ApiFailure(409, f"Cannot create index '{name}' because it already exists.")
        fields = body["fields"]
        if len(fields) > MAX_FIELDS:
            raise _bad(f"An index can have at most {MAX_FIELDS} fields")
        names = [f["name"] for f in fields]
        if len(set(names)) != len(names):
            raise _bad("Field names must be unique")
        keys = [f for f in fields if f.get("key")]
        if len(keys) != 1 or keys[0]["type"] != "Edm.String":
            raise _bad("An index needs exactly one key field of type Edm.String")
        search = body.get("vectorSearch") or {}
        algorithms = {a["name"]: a for a in search.get("algorithms") or []}
        profiles = {p["name"]: p for p in search.get("profiles") or []}
        for p in profiles.values():
            if p["algorithm"] not in algorithms:
                raise _bad(f"Profile '{p['name']}' names unknown algorithm '{p['algorithm']}'")
        stored = []
        for f in fields:
            if not _FIELD.match(f["name"]) or f["name"].lower().startswith("azuresearch"):
                raise _bad(f"Invalid field name '{f['name']}'")
            if f["type"] == VECTOR_TYPE:
                dims = f.get("dimensions")
                if not isinstance(dims, int) or not 2 <= dims <= MAX_DIM:
                    raise _bad(f"Vector field '{f['name']}' needs 2-{MAX_DIM} dimensions")
                if f.get("vectorSearchProfile") not in profiles:
                    raise _bad(f"Vector field '{f['name']}' names no existing vector profile")
                if f.get("filterable") or f.get("sortable"):
                    raise _bad(f"Vector field '{f['name']}' cannot be filterable or sortable")
            elif f["type"] not in _SCALARS and not (
                f["type"].startswith("Collection(") and f["type"][11:-1] in _SCALARS
            ):
                raise _bad(f"Field '{f['name']}' has unsupported type {f['type']}")
            # The service answers with every attribute resolved to its default.
            is_vector = f["type"] == VECTOR_TYPE
            stored.append({
                "name": f["name"], "type": f["type"], "key": bool(f.get("key")),
                "retrievable": f.get("retrievable", True), "stored": True,
                "searchable": f.get("searchable", f["type"].endswith("Edm.String)")
                                    or f["type"] == "Edm.String" or is_vector),
                "filterable": f.get("filterable", not is_vector),
                "sortable": f.get("sortable", not is_vector and "Collection" not in f["type"]),
                "facetable": f.get("facetable", False),
                **({"dimensions": f["dimensions"], "vectorSearchProfile":
                    f["vectorSearchProfile"]} if is_vector else {}),
                "synonymMaps": [],
            })  # fmt: skip
        definition = {"name": name, "fields": stored}
        for k in ("description", "vectorSearch"):
            if body.get(k) is not None:
                definition[k] = body[k]
        self.indexes[name] = IndexState(definition)
        return self._definition(self.indexes[name])

    def _project(
        self, state: IndexState, doc: dict[str, Any], select: list[str] | None
    ) -> dict[str, Any]:
        fields = state.fields
        names = select or [n for n, f in fields.items() if f.get("retrievable", True)]
        out = {}
        for n in names:
            f = fields.get(n)
            if f is None or not f.get("retrievable", True):
                raise _bad(f"Invalid $select: '{n}' is not a retrievable field")
            empty: Any = [] if f["type"].startswith("Collection(") and n in fields else None
            out[n] = doc.get(n, empty) if doc.get(n) is not None else empty
        return out

    def _search(self, state: IndexState, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("search") not in (None, "*"):
            raise _bad("this double implements search='*' (or none) only")
        body = {**body, "orderby": model.split(body.get("orderby"), "commaDelimited"),
                "select": model.split(body.get("select"), "commaDelimited")}  # fmt: skip
        top = body.get("top", 50)
        skip = body.get("skip", 0)
        if not 0 <= top <= MAX_TOP:
            raise _bad(f"$top must be 0-{MAX_TOP} here (the double does not page)")
        if not 0 <= skip <= MAX_SKIP:
            raise _bad(f"$skip must be 0-{MAX_SKIP}")
        key = state.key
        flt = _Filter(body["filter"], state).pred if body.get("filter") else None
        docs = list(state.docs.values())
        vqs = body.get("vectorQueries") or []
        if len(vqs) > 1:
            raise _bad("this double implements one vector query")
        if flt is not None and (not vqs or body.get("vectorFilterMode") != "postFilter"):
            docs = [d for d in docs if flt(d, {})]
        scored: list[tuple[dict[str, Any], float]]
        if vqs:
            vq = vqs[0]
            fname = vq.get("fields")
            f = state.fields.get(fname or "")
            if f is None or f["type"] != VECTOR_TYPE:
                raise _bad(f"'{fname}' is not a vector field")
            vector = vq["vector"]
            if len(vector) != f["dimensions"]:
                raise _bad(f"The vector has {len(vector)} dimensions, the field {f['dimensions']}")
            metric = state.metric(fname)
            ranked = sorted(
                ((d, _score(metric, vector, d[fname])) for d in docs if d.get(fname)),
                key=lambda t: (-t[1], t[0][key]),
            )
            scored = ranked[: vq.get("k", 50)]
            if flt is not None and body.get("vectorFilterMode") == "postFilter":
                scored = [t for t in scored if flt(t[0], {})]
        else:
            scored = [(d, 1.0) for d in docs]
            for clause in reversed(body.get("orderby") or []):
                fname, _, direction = clause.strip().partition(" ")
                f = state.fields.get(fname)
                if f is None or not f.get("sortable"):
                    raise _bad(f"Invalid $orderby: '{fname}' is not a sortable field")
                scored.sort(key=lambda t: (t[0].get(fname) is None, t[0].get(fname) or 0))
                if direction.strip() == "desc":
                    scored.reverse()
        total = len(scored)
        hits = scored[skip : skip + top]
        out: dict[str, Any] = {
            "value": [
                {"@search.score": s, **self._project(state, d, body.get("select"))} for d, s in hits
            ]
        }
        if body.get("count"):
            out["@odata.count"] = total
        return out

    def _write(self, state: IndexState, body: dict[str, Any]) -> tuple[int, Any]:
        actions = body["value"]
        if len(actions) > MAX_ACTIONS:
            raise _bad(f"A batch holds at most {MAX_ACTIONS} actions, not {len(actions)}")
        fields = state.fields
        key = state.key
        results = []
        for act in actions:
            kind = act.get("@search.action", "upload")
            doc = {k: v for k, v in act.items() if k != "@search.action"}
            k = doc.get(key)
            try:
                if not isinstance(k, str) or not _KEY.match(k):
                    raise _bad(f"Invalid document key: '{k}'")
                if kind == "delete":
                    state.docs.pop(k, None)
                else:
                    for n, v in doc.items():
                        f = fields.get(n)
                        if f is None:
                            raise _bad(f"The property '{n}' does not exist on the index")
                        if f["type"] == VECTOR_TYPE:
                            ok = v is None or (
                                isinstance(v, list) and len(v) == f["dimensions"]
                                and all(_fits(x, "Edm.Single") for x in v)
                            )  # fmt: skip
                        else:
                            ok = _fits(v, f["type"])
                        if not ok:
                            raise _bad(f"Invalid value for field '{n}' of type {f['type']}")
                    old = state.docs.get(k)
                    if kind == "merge" and old is None:
                        raise ApiFailure(404, f"Document not found: '{k}'")
                    if kind == "upload" or old is None:
                        state.docs[k] = doc
                    else:
                        state.docs[k] = {**old, **doc}
                results.append({"key": k, "status": True, "statusCode": 200})
            except ApiFailure as exc:
                results.append(
                    {"key": str(k), "status": False, "statusCode": exc.status,
                     "errorMessage": exc.message}
                )  # fmt: skip
        ok = all(r["status"] for r in results)
        return (200 if ok else 207), {"value": results}
