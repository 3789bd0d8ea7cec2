"""An Amazon S3 Vectors **protocol test double** — not S3 Vectors.

S3 Vectors is an AWS service; nothing can run it on this machine. The connector's tests
drive the official client (boto3's ``s3vectors``, pointed here with ``endpoint_url``) over
real HTTP against this small stdlib server on 127.0.0.1. It speaks the service's
rest-json wire protocol (``POST /PutVectors`` with a JSON body, errors as
``x-amzn-ErrorType`` plus ``{"message": ...}``) and implements only what the connector uses.

**Checked against the vendor's API model.** Requests are routed by the HTTP bindings of
botocore's service model, and every request body received and every response body sent
(errors included) is validated against the operation's input / output / error shapes
(``s3vectors_model.py``): a request that breaks the model is answered 400
``ValidationException`` as the service does; a response that breaks it is a bug of this
double, answered 500 and recorded. Every violation either way is kept in
``model_violations`` so a test run fails when the double or the connector drifts from
the real API.

**Semantics from the S3 Vectors user guide** (limits page, metadata filtering, vectors,
index naming), where the model says nothing:

* SigV4: the ``Authorization`` credential scope must name the double's access key, its
  region and service ``s3vectors`` (the signature itself is not recomputed);
* vector bucket and index names: 3-63 characters, lowercase letters, digits, ``-``
  (indexes also ``.``), starting and ending with a letter or digit;
* indexes: float32, dimension 1-4,096, ``cosine`` or ``euclidean``, up to 10
  non-filterable metadata keys, fixed at creation; up to 50 tags;
* vectors: keys 1-1,024 characters; ``data.float32`` of the index's dimension, finite
  (and not all zero on a cosine index: its distance is undefined; the service's answer
  to that is undocumented, this double refuses it); up to 500 per PutVectors /
  DeleteVectors, 100 per GetVectors; request payload up to 20 MiB;
* metadata: a JSON object of up to 50 keys whose values are strings, numbers, booleans
  or non-empty arrays of one primitive type (null, objects, nested or empty arrays are
  refused: the guide documents none of them); at most 40 KB in total and 2 KB for the
  filterable keys (all keys but the index's non-filterable ones), measured as compact
  UTF-8 JSON. Numbers are kept as float64 and come back as floats;
* ListVectors: ``maxResults`` 1-1,000 (default 500), ``segmentCount`` 1-16 with
  ``segmentIndex`` (both or neither), keys in UTF-8 order within a segment, an opaque
  ``nextToken`` bound to its segment; strongly consistent;
* QueryVectors: ``topK`` 1-100, exact kNN (``distance``: cosine distance 1 - cos, or
  euclidean distance; lower is closer), filters with ``$eq $ne $gt $gte $lt $lte $in $nin
  $exists $and $or`` on filterable keys; ``$eq``/``$in`` on an array match any element,
  ``$ne``/``$nin`` match when no element does. The guide leaves open what ``$ne``/``$nin``
  do to vectors lacking the key: this double matches them (the less convenient reading),
  so a connector has to guard against it;
* 429 ``TooManyRequestsException``, 503 ``ServiceUnavailableException`` and others are
  injected on demand with ``fail(code, times, op=...)``.

Writes are visible at once (S3 Vectors documents strong consistency for writes and lists).
"""

from __future__ import annotations

import base64
import json
import math
import re
import struct
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from botocore.model import OperationModel  # type: ignore[import-untyped]

from tests.protocol import s3vectors_model as model
from tests.protocol.httpdouble import DoubleHandler, HttpDouble

ACCOUNT = "123456789012"
MAX_DIM = 4096
MAX_TOP_K = 100
MAX_REQUEST_BYTES = 20 * 1024 * 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_FILTERABLE_BYTES = 2 * 1024
MAX_METADATA_KEYS = 50
MAX_TAGS = 50
DEFAULT_LIST_PAGE = 500
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TAG_TEXT = re.compile(r"[\w\s.:/=+\-@]*")
_CREDENTIAL = re.compile(r"Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")
_ERROR_STATUS = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "NotFoundException": 404,
    "ConflictException": 409,
    "TooManyRequestsException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
    "ServiceQuotaExceededException": 402,
    "RequestTimeoutException": 408,
}


class ApiFailure(Exception):
    """An error response: the modeled error's code and its message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.status = _ERROR_STATUS.get(code, 400)


def _invalid(message: str) -> ApiFailure:
    return ApiFailure("ValidationException", message)


@dataclass
class IndexState:
    bucket: str
    name: str
    dimension: int
    metric: str
    non_filterable: list[str]
    tags: dict[str, str]
    region: str
    created: float = field(default_factory=time.time)
    mode: str = "ENHANCED"
    vectors: dict[str, tuple[list[float], dict[str, Any] | None]] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return f"arn:aws:s3vectors:{self.region}:{ACCOUNT}:bucket/{self.bucket}/index/{self.name}"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "vectorBucketName": self.bucket,
            "indexName": self.name,
            "indexArn": self.arn,
            "creationTime": self.created,
            "dataType": "float32",
            "dimension": self.dimension,
            "distanceMetric": self.metric,
            "indexMode": self.mode,
        }
        if self.non_filterable:
            out["metadataConfiguration"] = {"nonFilterableMetadataKeys": list(self.non_filterable)}
        return out


@dataclass
class BucketState:
    name: str
    region: str
    created: float = field(default_factory=time.time)
    indexes: dict[str, IndexState] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return f"arn:aws:s3vectors:{self.region}:{ACCOUNT}:bucket/{self.name}"


# -- metadata and filters -------------------------------------------------------------------
def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _primitive_kind(v: Any) -> str | None:
    if isinstance(v, bool):
        return "boolean"
    if _number(v):
        return "number"
    if isinstance(v, str):
        return "string"
    return None


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def check_metadata(key: str, md: Any, non_filterable: list[str]) -> dict[str, Any]:
    """A vector's metadata as stored (numbers as float64), or ValidationException."""
    if not isinstance(md, dict):
        raise _invalid(f"Invalid metadata for vector {key!r}: metadata must be a JSON object")
    if len(md) > MAX_METADATA_KEYS:
        raise _invalid(
            f"Invalid metadata for vector {key!r}: {len(md)} keys exceeds the limit of "
            f"{MAX_METADATA_KEYS}"
        )
    total = _json_size(md)
    if total > MAX_METADATA_BYTES:
        raise _invalid(
            f"Invalid metadata for vector {key!r}: metadata size {total} bytes exceeds the "
            f"limit of {MAX_METADATA_BYTES} bytes"
        )
    filterable = {k: v for k, v in md.items() if k not in non_filterable}
    size = _json_size(filterable)
    if size > MAX_FILTERABLE_BYTES:
        raise _invalid(
            f"Invalid metadata for vector {key!r}: filterable metadata size {size} bytes "
            f"exceeds the limit of {MAX_FILTERABLE_BYTES} bytes"
        )
    out: dict[str, Any] = {}
    for k, v in md.items():
        kind = _primitive_kind(v)
        if kind is not None:
            out[k] = float(v) if kind == "number" else v
            continue
        if isinstance(v, list) and v:
            kinds = {_primitive_kind(x) for x in v}
            if len(kinds) == 1 and None not in kinds:
                out[k] = [float(x) for x in v] if kinds == {"number"} else list(v)
                continue
        what = "null" if v is None else "an empty array" if v == [] else _describe(v)
        raise _invalid(
            f"Invalid metadata for vector {key!r}: the value of {k!r} is {what}; values "
            "must be strings, numbers, booleans or non-empty arrays of one of those"
        )
    return out


def _describe(v: Any) -> str:
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "an array of mixed or nested values"
    return type(v).__name__


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _number(a) and _number(b):
        return float(a) == float(b)
    return isinstance(a, str) and isinstance(b, str) and a == b


def _field_matches(value: Any, op: str, arg: Any) -> bool:
    present = value is not None
    if op == "$exists":
        if not isinstance(arg, bool):
            raise _invalid("Invalid filter: $exists takes a boolean")
        return present == arg
    values = value if isinstance(value, list) else [value]
    if op in ("$in", "$nin"):
        if not isinstance(arg, list) or not arg or any(_primitive_kind(a) is None for a in arg):
            raise _invalid(f"Invalid filter: {op} takes a non-empty array of primitives")
        hit = present and any(_same(v, a) for v in values for a in arg)
        return hit if op == "$in" else not hit
    if op in ("$eq", "$ne"):
        if _primitive_kind(arg) is None:
            raise _invalid(f"Invalid filter: {op} takes a string, number or boolean")
        hit = present and any(_same(v, arg) for v in values)
        return hit if op == "$eq" else not hit
    if op in ("$gt", "$gte", "$lt", "$lte"):
        if not _number(arg):
            raise _invalid(f"Invalid filter: {op} takes a number")
        if not _number(value):
            return False
        v, a = float(value), float(arg)
        return {"$gt": v > a, "$gte": v >= a, "$lt": v < a, "$lte": v <= a}[op]
    raise _invalid(f"Invalid filter: unsupported operator {op!r}")


def check_filter(flt: Any, non_filterable: list[str]) -> None:
    """Refuse a malformed filter, or one on a non-filterable key, before evaluating it."""
    if not isinstance(flt, dict) or not flt:
        raise _invalid("Invalid filter: a filter is a non-empty JSON object")
    for key, cond in flt.items():
        if key in ("$and", "$or"):
            if not isinstance(cond, list) or not cond:
                raise _invalid(f"Invalid filter: {key} takes a non-empty array of filters")
            for c in cond:
                check_filter(c, non_filterable)
        elif key.startswith("$"):
            raise _invalid(f"Invalid filter: unsupported operator {key!r}")
        elif key in non_filterable:
            raise _invalid(f"Invalid filter: metadata key {key!r} is non-filterable")
        elif isinstance(cond, dict):
            if not cond:
                raise _invalid(f"Invalid filter: empty condition on {key!r}")
            for op, arg in cond.items():
                _field_matches(None, op, arg)  # validates the operator and its operand
        elif _primitive_kind(cond) is None:
            raise _invalid(f"Invalid filter: the value for {key!r} must be a primitive")


def matches(flt: dict[str, Any], md: dict[str, Any]) -> bool:
    """Whether metadata ``md`` satisfies the (checked) filter ``flt``."""
    for key, cond in flt.items():
        if key in ("$and", "$or"):
            results = [matches(c, md) for c in cond]
            if not (all(results) if key == "$and" else any(results)):
                return False
        else:
            ops = cond if isinstance(cond, dict) else {"$eq": cond}
            if not all(_field_matches(md.get(key), op, arg) for op, arg in ops.items()):
                return False
    return True


def _f32(values: list[float]) -> list[float]:
    """Values rounded to float32, as the service stores them."""
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def _distance(metric: str, q: list[float], v: list[float]) -> float:
    if metric == "euclidean":
        return math.sqrt(sum((a - b) * (a - b) for a, b in zip(q, v, strict=True)))
    dot = sum(a * b for a, b in zip(q, v, strict=True))
    norms = math.sqrt(sum(a * a for a in q)) * math.sqrt(sum(b * b for b in v))
    return 1.0 - (dot / norms if norms else 0.0)


def segment_of(key: str, count: int) -> int:
    """The ListVectors segment a key falls in (stable for a given segment count)."""
    return zlib.crc32(key.encode()) % count


# -- the server ---------------------------------------------------------------------------------
class S3VectorsServer(HttpDouble):
    """Every operation on one port, as the regional endpoint serves them (``url`` is what
    ``?endpoint_url=`` points at)."""

    requests: list[tuple[str, int]]  # (operation, HTTP status)

    def __init__(self, access_key_id: str, region: str = "us-east-1") -> None:
        self.access_key_id = access_key_id
        self.region = region
        self.buckets: dict[str, BucketState] = {}
        super().__init__()  # _failures: [code, op, still to let through, times]

    def create_bucket(self, name: str) -> None:
        """Create a vector bucket directly (a test's setup)."""
        with self.lock:
            self.buckets.setdefault(name, BucketState(name, self.region))

    def fail(self, code: str, times: int | None = 1, op: str = "", after: int = 0) -> None:
        """Answer ``times`` requests for operation ``op`` (every operation when empty) with
        the modeled error ``code``, after letting ``after`` of them through; ``times=None``
        fails them until :meth:`clear_failures`."""
        with self.lock:
            self._failures.append([code, op, after, times])

    def clear_failures(self) -> list[tuple[str, str, int, int | None]]:
        """Drop every injected failure; returns the ones left unused."""
        with self.lock:
            left = [(f[0], f[1], f[2], f[3]) for f in self._failures]
            self._failures.clear()
        return left

    def _injected(self, op: str) -> str | None:
        with self.lock:
            hit = next((f for f in self._failures if not f[1] or f[1] == op), None)
            if hit is None:
                return None
            if hit[2] > 0:
                hit[2] -= 1
                return None
            if hit[3] is not None:
                hit[3] -= 1
                if hit[3] == 0:
                    self._failures.remove(hit)
            return str(hit[0])

    # -- addressing --------------------------------------------------------------------------
    def _bucket(self, p: dict[str, Any], arn_key: str = "vectorBucketArn") -> BucketState:
        name = p.get("vectorBucketName")
        if arn_key in p:
            m = re.search(r":bucket/([^/]+)$", p[arn_key])
            if name is not None or m is None:
                raise _invalid("Specify either the vector bucket name or its ARN")
            name = m[1]
        if name is None:
            raise _invalid("Specify the vector bucket name or its ARN")
        bucket = self.buckets.get(name)
        if bucket is None:
            raise ApiFailure(
                "NotFoundException", f"The specified vector bucket {name} was not found"
            )
        return bucket

    def _index(self, p: dict[str, Any]) -> IndexState:
        if "indexArn" in p:
            if "vectorBucketName" in p or "indexName" in p:
                raise _invalid("Specify either the index ARN or the bucket and index names")
            m = re.search(r":bucket/([^/]+)/index/([^/]+)$", p["indexArn"])
            if m is None:
                raise _invalid("Invalid index ARN")
            bucket_name, name = m[1], m[2]
        else:
            bucket_name, name = p.get("vectorBucketName"), p.get("indexName")
            if bucket_name is None or name is None:
                raise _invalid("Specify the index ARN, or the bucket name and the index name")
        bucket = self._bucket({"vectorBucketName": bucket_name})
        idx = bucket.indexes.get(name)
        if idx is None:
            raise ApiFailure("NotFoundException", f"The specified index {name} was not found")
        return idx

    # -- operations ----------------------------------------------------------------------------
    def dispatch(self, op: str, p: dict[str, Any], size: int) -> Any:
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise ApiFailure("InternalServerException", f"this double does not serve {op}")
        if size > MAX_REQUEST_BYTES:
            raise _invalid(
                f"Request payload size {size} bytes exceeds the limit of {MAX_REQUEST_BYTES}"
            )
        return handler(p)

    def _op_CreateVectorBucket(self, p: dict[str, Any]) -> Any:
        name = p["vectorBucketName"]
        if not _BUCKET_NAME.match(name):
            raise _invalid(f"Invalid vector bucket name {name!r}")
        with self.lock:
            if name in self.buckets:
                raise ApiFailure("ConflictException", f"Vector bucket {name} already exists")
            self.buckets[name] = BucketState(name, self.region)
            return {"vectorBucketArn": self.buckets[name].arn}

    def _op_GetVectorBucket(self, p: dict[str, Any]) -> Any:
        b = self._bucket(p)
        return {
            "vectorBucket": {
                "vectorBucketName": b.name,
                "vectorBucketArn": b.arn,
                "creationTime": b.created,
                "defaultIndexMode": "ENHANCED",
            }
        }

    def _op_CreateIndex(self, p: dict[str, Any]) -> Any:
        bucket = self._bucket(p)
        name = p["indexName"]
        if not _INDEX_NAME.match(name):
            raise _invalid(
                f"Invalid index name {name!r}: 3-63 lowercase letters, numbers, hyphens and "
                "dots, beginning and ending with a letter or number"
            )
        keys = list((p.get("metadataConfiguration") or {}).get("nonFilterableMetadataKeys", []))
        if len(set(keys)) != len(keys):
            raise _invalid("nonFilterableMetadataKeys has duplicate keys")
        tags = dict(p.get("tags") or {})
        if len(tags) > MAX_TAGS:
            raise _invalid(f"{len(tags)} tags exceeds the limit of {MAX_TAGS}")
        if any(k.lower().startswith("aws:") for k in tags):
            raise _invalid("Tag keys starting with 'aws:' are reserved")
        # The model's tag patterns are unanchored (Smithy), so they allow anything; AWS
        # tagging allows only these characters in the whole key and value.
        bad = [
            k for k, v in tags.items() if not (_TAG_TEXT.fullmatch(k) and _TAG_TEXT.fullmatch(v))
        ]
        if bad:
            raise _invalid(f"Invalid tag {bad[0]!r}: letters, digits, spaces and _.:/=+-@ only")
        if "queryTexts" in p or (p.get("metadataConfiguration") or {}).get(
            "textSearchConfigurations"
        ):
            raise _invalid("this double does not serve text search configurations")
        with self.lock:
            if name in bucket.indexes:
                raise ApiFailure("ConflictException", f"Index {name} already exists")
            idx = IndexState(
                bucket.name, name, p["dimension"], p["distanceMetric"], keys, tags, self.region
            )
            bucket.indexes[name] = idx
        return {"indexArn": idx.arn}

    def _op_GetIndex(self, p: dict[str, Any]) -> Any:
        return {"index": self._index(p).describe()}

    def _op_ListIndexes(self, p: dict[str, Any]) -> Any:
        bucket = self._bucket(p)
        limit = p.get("maxResults", 500)
        prefix = p.get("prefix", "")
        after = self._token(p.get("nextToken"), {"prefix": prefix}) if "nextToken" in p else ""
        with self.lock:
            names = sorted(n for n in bucket.indexes if n.startswith(prefix) and n > after)
            page = [bucket.indexes[n] for n in names[:limit]]
        out: dict[str, Any] = {
            "indexes": [
                {
                    "vectorBucketName": i.bucket,
                    "indexName": i.name,
                    "indexArn": i.arn,
                    "creationTime": i.created,
                }
                for i in page
            ]
        }
        if len(names) > limit:
            out["nextToken"] = self._make_token(page[-1].name, {"prefix": prefix})
        return out

    def _op_DeleteIndex(self, p: dict[str, Any]) -> Any:
        idx = self._index(p)
        with self.lock:
            self.buckets[idx.bucket].indexes.pop(idx.name, None)
        return {}

    def _op_ListTagsForResource(self, p: dict[str, Any]) -> Any:
        arn = p["resourceArn"]
        with self.lock:
            for b in self.buckets.values():
                for idx in b.indexes.values():
                    if idx.arn == arn:
                        return {"tags": dict(idx.tags)}
        raise ApiFailure("NotFoundException", f"The resource {arn} was not found")

    def _op_PutVectors(self, p: dict[str, Any]) -> Any:
        idx = self._index(p)
        staged: dict[str, tuple[list[float], dict[str, Any] | None]] = {}
        for vec in p["vectors"]:
            key = vec["key"]
            values = vec["data"].get("float32")
            if values is None or len(values) != idx.dimension:
                got = 0 if values is None else len(values)
                raise _invalid(
                    f"Invalid vector {key!r}: dimension {got} does not match the index "
                    f"dimension {idx.dimension}"
                )
            if not all(_number(x) and math.isfinite(x) for x in values):
                raise _invalid(f"Invalid vector {key!r}: values must be finite float32 numbers")
            stored = _f32([float(x) for x in values])
            if idx.metric == "cosine" and not any(stored):
                raise _invalid(f"Invalid vector {key!r}: a zero vector has no cosine distance")
            md = vec.get("metadata")
            staged[key] = (
                stored,
                check_metadata(key, md, idx.non_filterable) if md is not None else None,
            )
        with self.lock:
            idx.vectors.update(staged)
        return {}

    def _op_GetVectors(self, p: dict[str, Any]) -> Any:
        idx = self._index(p)
        with self.lock:
            found = [(k, idx.vectors[k]) for k in dict.fromkeys(p["keys"]) if k in idx.vectors]
        return {"vectors": [self._out(k, v, md, p) for k, (v, md) in found]}

    @staticmethod
    def _out(key: str, v: list[float], md: dict[str, Any] | None, p: dict[str, Any]) -> Any:
        item: dict[str, Any] = {"key": key}
        if p.get("returnData"):
            item["data"] = {"float32": list(v)}
        if p.get("returnMetadata"):
            item["metadata"] = dict(md or {})
        return item

    def _op_ListVectors(self, p: dict[str, Any]) -> Any:
        idx = self._index(p)
        count, seg = p.get("segmentCount"), p.get("segmentIndex")
        if (count is None) != (seg is None):
            raise _invalid("segmentCount and segmentIndex must be specified together")
        if count is not None and seg >= count:
            raise _invalid(f"segmentIndex {seg} must be less than segmentCount {count}")
        limit = p.get("maxResults", DEFAULT_LIST_PAGE)
        scope = {"index": idx.arn, "segmentCount": count, "segmentIndex": seg}
        after = self._token(p.get("nextToken"), scope) if "nextToken" in p else None
        with self.lock:
            keys = sorted(
                (
                    k
                    for k in idx.vectors
                    if (count is None or segment_of(k, count) == seg)
                    and (after is None or k.encode() > after.encode())
                ),
                key=str.encode,
            )
            page = [(k, idx.vectors[k]) for k in keys[:limit]]
        out: dict[str, Any] = {"vectors": [self._out(k, v, md, p) for k, (v, md) in page]}
        if len(keys) > limit:
            out["nextToken"] = self._make_token(page[-1][0], scope)
        return out

    def _op_DeleteVectors(self, p: dict[str, Any]) -> Any:
        idx = self._index(p)
        with self.lock:
            for k in p["keys"]:
                idx.vectors.pop(k, None)
        return {}

    def _op_QueryVectors(self, p: dict[str, Any]) -> Any:
        idx = self._index(p)
        top_k = p["topK"]
        if top_k > MAX_TOP_K:
            raise _invalid(f"topK {top_k} exceeds the limit of {MAX_TOP_K}")
        if "queryTexts" in p or "nextToken" in p:
            raise _invalid("this double serves vector queries only")
        q = (p.get("queryVector") or {}).get("float32")
        if q is None or len(q) != idx.dimension:
            raise _invalid(f"Query vector dimension does not match the index {idx.dimension}")
        q = _f32([float(x) for x in q])
        flt = p.get("filter")
        if flt is not None:
            check_filter(flt, idx.non_filterable)
        with self.lock:
            items = list(idx.vectors.items())
        hits = sorted(
            (
                (_distance(idx.metric, q, v), k, md)
                for k, (v, md) in items
                if flt is None or matches(flt, md or {})
            ),
            key=lambda h: (h[0], h[1]),
        )
        out = []
        for dist, k, md in hits[:top_k]:
            item: dict[str, Any] = {"key": k}
            if p.get("returnDistance"):
                item["distance"] = dist
            if p.get("returnMetadata"):
                item["metadata"] = dict(md or {})
            out.append(item)
        return {"vectors": out, "distanceMetric": idx.metric}

    # -- pagination tokens ----------------------------------------------------------------------
    @staticmethod
    def _make_token(after: str, scope: dict[str, Any]) -> str:
        raw = json.dumps({"after": after, **scope}, sort_keys=True).encode()
        return base64.urlsafe_b64encode(raw).decode()

    @staticmethod
    def _token(token: Any, scope: dict[str, Any]) -> str:
        try:
            data = json.loads(base64.urlsafe_b64decode(str(token)))
            after = data.pop("after")
        except (ValueError, KeyError, TypeError):
            raise _invalid("Invalid nextToken") from None
        if data != json.loads(json.dumps(scope)):
            raise _invalid("The nextToken does not belong to this request's parameters")
        return str(after)

    # -- HTTP plumbing ---------------------------------------------------------------------------
    def _authorized(self, headers: Any) -> str | None:
        """Why the request's SigV4 credential scope is not ours (None: it is)."""
        auth = headers.get("Authorization") or ""
        m = _CREDENTIAL.search(auth)
        if not auth.startswith("AWS4-HMAC-SHA256 ") or m is None or not headers.get("X-Amz-Date"):
            return "The request is not signed with AWS Signature Version 4"
        key, _, region, service = m.groups()
        if key != self.access_key_id:
            return "The security token included in the request is invalid"
        if region != self.region or service != "s3vectors":
            return f"Credential should be scoped to region {self.region!r}, service 's3vectors'"
        return None

    def handle(
        self, method: str, path: str, query: str, headers: Any, raw: bytes
    ) -> tuple[int, dict[str, str], Any]:
        """One request: (HTTP status, extra headers, JSON body or None)."""
        found = model.route(method, path)
        op: OperationModel | None = found[0] if found else None
        name = op.name if op else f"{method} {path}"
        try:
            if found is None:
                raise ApiFailure("NotFoundException", f"No operation at {method} {path}")
            assert op is not None
            denied = self._authorized(headers)
            if denied:
                raise ApiFailure("AccessDeniedException", denied)
            injected = self._injected(op.name)
            if injected:
                raise ApiFailure(injected, "injected failure")
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                raise _invalid("The request body is not valid JSON") from None
            params, problems = model.request_params(op, found[1], parse_qs(query), body)
            if problems:
                with self.lock:
                    self.model_violations += [f"request {op.name}: {p}" for p in problems]
                raise _invalid("; ".join(problems[:5]))
            payload = self.dispatch(op.name, params, len(raw))
            status = op.http.get("responseCode", 200)
            problems = model.check_output(op, payload)
            if problems:
                with self.lock:
                    self.model_violations += [f"response {op.name}: {p}" for p in problems]
                raise ApiFailure("InternalServerException", "; ".join(problems[:5]))
            with self.lock:
                self.requests.append((op.name, status))
            return status, {}, payload
        except ApiFailure as exc:
            payload = {"message": exc.message}
            problems = model.check_error(op, exc.code, exc.status, payload)
            with self.lock:
                self.model_violations += [f"error {name}: {p}" for p in problems]
                self.requests.append((name, exc.status))
            return exc.status, {"x-amzn-ErrorType": exc.code}, payload

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(DoubleHandler):
            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                status, extra, payload = server.handle(
                    method, parts.path, parts.query, self.headers, self._body()
                )
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-amz-request-id", f"{time.monotonic_ns():x}")
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                self._serve("PUT")

        return Handler
