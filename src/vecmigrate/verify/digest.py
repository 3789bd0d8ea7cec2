"""Order-independent content digests of a collection.

Each record contributes, summed so that order and partitioning do not matter:

* a 64-bit hash of its content (id as text, namespace, document, metadata with JSON types
  and floats at float32 precision, sparse vectors, the bits of a vector holding NaN/Inf);
* per dense vector field, ``PROJECTIONS`` random projections of the vector (normalised for
  cosine: some engines normalise on insert) times a weight in [1, 2) drawn from the id, so
  records swapping vectors change the sum; compared with an allowance growing with the sum;
* with a ``tolerance``, per vector field a 64-bit hash of the id and the values on a grid of
  that step (exact bits for 0). A value moved by more than the step lands in another cell:
  any change above the tolerance changes the sum, at any collection size. Noise below it
  may cross a cell boundary too, so a grid mismatch alone leaves a bucket *unsettled* until
  its records are compared one by one (``verify.diff``).

Sums are kept per bucket (by a hash of the id) so a mismatch narrows down to buckets, and
from there to ids, without sorting either side.

Versions (``CollectionDigest.version``, written in its JSON and so in dump manifests):

* **1** hashed each record's canonical JSON text with blake2b, one record at a time in
  Python. Still computed on request (``version=1``) and read from older manifests.
* **2** (the default) hashes whole Arrow columns with numpy: strings as little-endian
  8-byte words, each mixed with its position by splitmix64's finaliser and summed per
  value; numbers by their bits, under a tag per JSON type; lists by position and
  dicts (metadata) order-independently, so a metadata value hashes alike whether an
  engine keeps it in a typed column or in ``metadata_extra``; per record, the fields'
  hashes are bound to the id's by a final mix. ``value_hash`` is the same definition for
  one Python value (the path of ``metadata_extra`` and JSON fields). Not cryptographic:
  it finds what a migration lost or changed, not what an adversary forged.

Digests of different versions are never compared (``compare`` refuses): compute both
sides with the version of the stored one (``collection_digest(..., version=1)``).

``projections=False`` leaves the projections out and hashes vectors by their exact bits
(grid step 0): for comparing two sides that must be bit-identical, such as the batches a
target acknowledged and what the mapping makes of the source read again (about a fifth of
the digest's work at 50-d, a quarter at 384-d). Such digests are compared only with their
like.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecmigrate.connectors.base import Connector
from vecmigrate.errors import ConfigError
from vecmigrate.model import CollectionSchema, Metric
from vecmigrate.records import metadata_rows, vectors_or_nan
from vecmigrate.retry import scan_resuming

BUCKETS = 64
PROJECTIONS = 8
WEIGHT_MAX = 2.0  # id weights of the projections lie in [1, WEIGHT_MAX)
DIGEST_VERSION = 2  # what digests are computed with unless asked otherwise
VERSIONS = (1, 2)
ALGORITHMS = {
    1: f"blake2b64-sum+idproj{PROJECTIONS}+grid/buckets{BUCKETS}",
    2: f"colhash64-sum+idproj{PROJECTIONS}+grid/buckets{BUCKETS}",
}
_MASK = (1 << 64) - 1
# splitmix64 constants: a golden-ratio increment and the finaliser's multipliers.
_PHI = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_OFF_GRID = np.uint64(0xA5A5A5A5A5A5A5A5)  # tags values hashed by their bits, not a cell
_BLOCK = 1 << 18  # values hashed per numpy step: temporaries stay a few MB
_WORDS = 1 << 18  # string words hashed per numpy step (v2)
_BATCH_BYTES = 1 << 23  # vector bytes per scanned batch when batch_rows is not given


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: a bijection of uint64 that spreads every bit."""
    x ^= x >> np.uint64(30)
    x *= _C1  # uint64 arrays wrap modulo 2**64, which is what the hash wants
    x ^= x >> np.uint64(27)
    x *= _C2
    x ^= x >> np.uint64(31)
    return x


def _mix_int(x: int) -> int:
    """``_mix`` of one Python int (taken modulo 2**64)."""
    x &= _MASK
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


_LANE_TABLE = np.zeros(0, np.uint64)


def _lane_table(n: int) -> np.ndarray:
    """At least ``n`` position keys: entry j is ``_mix((j + 1) * _PHI)``."""
    global _LANE_TABLE
    table = _LANE_TABLE
    if len(table) < n:
        size = max(64, 1 << (n - 1).bit_length())
        table = _mix(np.arange(1, size + 1, dtype=np.uint64) * _PHI)
        table.flags.writeable = False
        _LANE_TABLE = table  # swapped whole: readers see the old table or the new one
    return table


def _lane_int(j: int) -> int:
    return _mix_int((j + 1) * 0x9E3779B97F4A7C15)


@functools.lru_cache(maxsize=32)
def _lanes(dim: int) -> np.ndarray:
    # A key per coordinate, so equal values at different positions hash differently.
    return _lane_table(dim)[:dim]


def _salt(label: str) -> np.uint64:
    return np.uint64(_hash64(label.encode()))


def _project(m: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """``m @ directions`` in products small enough that BLAS runs each on the calling
    thread (OpenBLAS threads products over 65536 x 4 multiply-adds, then spins its
    workers for a while: with several digests at once that burns the cores they need)."""
    step = max(16, 196_608 // (directions.shape[0] * directions.shape[1] or 1))
    if len(m) <= step:
        out: np.ndarray = m @ directions
        return out
    return np.concatenate([m[i : i + step] @ directions for i in range(0, len(m), step)])


def _projection(dim: int) -> np.ndarray:
    # Fixed per dimension so every run, machine and engine uses the same directions.
    rng = np.random.default_rng(1_000_003 + dim)
    r = rng.normal(size=(dim, PROJECTIONS))
    unit: np.ndarray = r / np.linalg.norm(r, axis=0, keepdims=True)
    return unit


def id_text(value: Any) -> str:
    """Canonical text of an id: ``5`` and ``"5"`` are the same record across engines."""
    return str(value)


# -- version 2: column hashing -----------------------------------------------------------------
# Tags keep JSON types apart (1 and 1.0 and "1" and true differ) and fields apart.
_T = {name: int(_salt(f"vecmigrate-digest-v2:{name}")) for name in (
    "null", "bool", "int", "bigint", "float", "str", "list", "dict", "len", "record", "other",
    "document", "namespace", "metadata", "sparse",
)}  # fmt: skip
_TN = {name: np.uint64(v) for name, v in _T.items()}
_NULL_HASH = _mix_int(_T["null"])
_CANON_NAN: int = struct.unpack("<Q", struct.pack("<d", float("nan")))[0]
_F32_LIMIT = 3e38  # floats below it are compared at float32 precision (Chroma's 1 ULP)
_TAIL = np.asarray([(1 << (8 * r)) - 1 for r in range(9)], dtype=np.uint64)  # r bytes kept


def _u64(value: int) -> np.uint64:
    return np.uint64(value & _MASK)


def _word_sum_int(data: bytes) -> int:
    """Sum over the little-endian 8-byte words of ``data`` (the last zero-padded) of
    ``mix(word ^ lane[position])``, modulo 2**64: the body of the v2 string hash."""
    total = 0
    for j in range(0, len(data), 8):
        word = int.from_bytes(data[j : j + 8], "little")  # a short tail is zero-padded
        total += _mix_int(word ^ _lane_int(j >> 3))
    return total & _MASK


def _bytes_hash_int(data: bytes) -> int:
    """The v2 hash of one byte string (see ``string_hashes``), in Python."""
    return _mix_int(_word_sum_int(data) + _mix_int(len(data) ^ _T["len"]))


@functools.lru_cache(maxsize=4096)
def _key_hash(key: str) -> int:
    return _bytes_hash_int(key.encode())


def _float_bits_int(value: float) -> int:
    if math.isnan(value):
        return _CANON_NAN
    if abs(value) < _F32_LIMIT:
        value = float(np.float32(value))
    bits: int = struct.unpack("<Q", struct.pack("<d", value))[0]
    return bits


def value_hash(value: Any) -> int:
    """The v2 hash of one metadata value as Python holds it (JSON types): what
    ``_value_hashes`` computes for a whole Arrow column, one value at a time."""
    if value is None:
        return _NULL_HASH
    if isinstance(value, bool):
        return _mix_int(_T["bool"] ^ int(value))
    if isinstance(value, int):
        if -(1 << 63) <= value < (1 << 63):
            return _mix_int(_T["int"] ^ (value & _MASK))
        return _mix_int(_T["bigint"] ^ _bytes_hash_int(str(value).encode()))
    if isinstance(value, float):
        return _mix_int(_T["float"] ^ _float_bits_int(value))
    if isinstance(value, str):
        return _mix_int(_T["str"] ^ _bytes_hash_int(value.encode()))
    if isinstance(value, (list, tuple)):
        total = _mix_int(len(value) ^ _T["len"])
        for j, item in enumerate(value):
            total += _mix_int(value_hash(item) ^ _lane_int(j))
        return _mix_int(_T["list"] ^ (total & _MASK))
    if isinstance(value, dict):
        return _dict_hash_int(value)
    text = json.dumps(value, sort_keys=True, default=str)  # not a JSON type: its text
    return _mix_int(_T["other"] ^ _bytes_hash_int(text.encode()))


def _dict_hash_int(items: dict[str, Any]) -> int:
    total = sum(_mix_int(_key_hash(str(k)) ^ value_hash(v)) for k, v in items.items())
    return _mix_int(_T["dict"] ^ (total & _MASK))


def _byte_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (int64, n + 1, absolute) and data bytes of a string or binary array."""
    t = arr.type
    if not _is_bytes(t):
        arr = arr.cast(pa.large_binary())  # string views and the like
        t = arr.type
    n = len(arr)
    bufs = arr.buffers()
    if n == 0 or bufs[1] is None:
        return np.zeros(n + 1, np.int64), np.zeros(0, np.uint8)
    kind = np.int64 if _is_large(t) else np.int32
    off = np.frombuffer(bufs[1], dtype=kind, count=arr.offset + n + 1)[arr.offset :]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return off.astype(np.int64), data


def _is_bytes(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    )


def _is_large(t: pa.DataType) -> bool:
    return bool(pa.types.is_large_string(t) or pa.types.is_large_binary(t))


def _word_aligned(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each value's length, and the values zero-padded to whole 8-byte words, laid end to
    end (Arrow's own concatenation, at memcpy speed): the word each value starts at
    (n + 1) and every word, little-endian."""
    if not _is_bytes(arr.type):
        arr = arr.cast(pa.large_binary())
    n = len(arr)
    off, _ = _byte_buffers(arr)
    lens = off[1:] - off[:-1]
    pad = (-lens) & 7
    large = _is_large(arr.type) or int(off[-1] - off[0]) + 7 * n >= 2**31 - 1
    kind = pa.large_binary() if large else pa.binary()
    arr = arr.cast(kind) if large and not _is_large(arr.type) else arr.view(kind)
    pad_off = np.zeros(n + 1, np.int64 if large else np.int32)
    np.cumsum(pad, out=pad_off[1:])
    zeros = pa.py_buffer(np.zeros(int(pad_off[-1]) + 1, np.uint8))
    pads = pa.Array.from_buffers(kind, n, [None, pa.py_buffer(pad_off), zeros])
    joined = pc.binary_join_element_wise(arr, pads, pa.scalar(b"", kind))
    joff, jdata = _byte_buffers(joined)
    words = jdata[int(joff[0]) : int(joff[-1])].view("<u8").astype(np.uint64, copy=False)
    return lens, (joff - joff[0]) >> 3, words


def string_hashes(arr: pa.Array) -> np.ndarray:
    """The v2 hash of each value's bytes (UTF-8 for text; a null hashes as empty): the sum
    over its little-endian 8-byte words (the last zero-padded) of ``mix(word ^
    lane[position])``, mixed with the length. ``_WORDS`` words at a time: flat memory."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    same = _same_length_hashes(arr)
    if same is not None:
        return same
    lens, wstart, words = _word_aligned(arr)
    n = len(lens)
    counts = wstart[1:] - wstart[:-1]
    sums = np.zeros(n, np.uint64)
    if len(words):
        lanes = _lane_table(int(counts.max()))
        s = 0
        while s < n:  # whole values at a time, at least one
            e = int(np.searchsorted(wstart, wstart[s] + _WORDS, "right")) - 1
            e = min(n, max(s + 1, e))
            a, b = int(wstart[s]), int(wstart[e])
            if b > a:
                cnt = counts[s:e]
                j = np.arange(b - a) - np.repeat(wstart[s:e] - a, cnt)  # position in its value
                h = _mix(words[a:b] ^ lanes[j])
                some = np.flatnonzero(cnt)
                sums[s + some] = np.add.reduceat(h, wstart[s:e][some] - a)
            s = e
    return _mix(sums + _mix(lens.astype(np.uint64) ^ _TN["len"]))


def _same_length_hashes(arr: pa.Array) -> np.ndarray | None:
    """``string_hashes`` of values all of one length (uuids, zero-padded keys), read as
    a matrix of words straight from Arrow's data buffer; None for other arrays."""
    n = len(arr)
    if n == 0 or arr.null_count or not _is_bytes(arr.type):
        return None
    off, data = _byte_buffers(arr)
    length = int(off[1] - off[0])
    if length == 0 or int(off[-1] - off[0]) != n * length or np.any(np.diff(off) != length):
        return None
    width = (length + 7) // 8
    lanes = _lane_table(width)
    sums = np.zeros(n, np.uint64)
    step = max(1, _WORDS // width)
    for s in range(0, n, step):  # a block of values at a time: flat memory
        e = min(n, s + step)
        block = np.zeros((e - s, width * 8), np.uint8)
        block[:, :length] = data[int(off[s]) : int(off[e])].reshape(e - s, length)
        words = block.view("<u8").astype(np.uint64, copy=False)
        for j in range(width):
            sums[s:e] += _mix(words[:, j] ^ lanes[j])
    lens = np.full(n, length, np.uint64)
    return _mix(sums + _mix(lens ^ _TN["len"]))


def _valid(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.ones(len(arr), bool)
    out: np.ndarray = arr.is_valid().to_numpy(zero_copy_only=False)
    return out


def _float_bits(m: np.ndarray) -> np.ndarray:
    # One NaN and one zero: engines may return another NaN payload or -0.0 for 0.0.
    canon = np.where(np.isnan(m), np.nan, m + 0.0)  # -0.0 + 0.0 is 0.0
    return canon.view(np.uint64)


def _metadata_float_bits(values: np.ndarray) -> np.ndarray:
    """Bits of metadata floats as ``_float_bits_int`` takes them (float32 precision, one
    NaN; -0.0 kept: it is another JSON value)."""
    f = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = f.astype(np.float32).astype(np.float64)
        f = np.where(np.abs(f) < _F32_LIMIT, rounded, f)
    bits = f.view(np.uint64).copy()
    bits[np.isnan(f)] = np.uint64(_CANON_NAN)
    return bits


def _value_hashes(arr: pa.Array) -> np.ndarray:
    """``value_hash`` of every value of an Arrow array (as ``to_pylist`` gives them),
    column-wise for strings, numbers, bools, lists and structs; nulls hash as None."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t, n = arr.type, len(arr)
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_null(t):
        return np.full(n, _NULL_HASH, np.uint64)
    out: np.ndarray
    if pa.types.is_string(t) or pa.types.is_large_string(t) or _is_string_view(t):
        out = _mix(string_hashes(arr) ^ _TN["str"])
    elif pa.types.is_boolean(t):
        b = pc.fill_null(arr, False).to_numpy(zero_copy_only=False).astype(np.uint64)
        out = _mix(b ^ _TN["bool"])
    elif pa.types.is_integer(t) and not _beyond_int64(arr):
        ints = pc.fill_null(arr, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        out = _mix(ints.view(np.uint64) ^ _TN["int"])
    elif pa.types.is_floating(t):
        f = pc.fill_null(arr.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False)
        out = _mix(_metadata_float_bits(f) ^ _TN["float"])
    elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        out = _list_hashes(arr)
    elif pa.types.is_struct(t):
        total = np.zeros(n, np.uint64)
        for child_field, child in zip(t, arr.flatten(), strict=True):
            total += _mix(_value_hashes(child) ^ _u64(_key_hash(child_field.name)))
        out = _mix(total ^ _TN["dict"])
    else:  # anything else: one value at a time
        return np.fromiter((value_hash(v) for v in arr.to_pylist()), np.uint64, count=n)
    if arr.null_count:
        out[~_valid(arr)] = np.uint64(_NULL_HASH)
    return out


def _is_string_view(t: pa.DataType) -> bool:
    check = getattr(pa.types, "is_string_view", None)  # pyarrow >= 16
    return bool(check(t)) if check is not None else False


def _beyond_int64(arr: pa.Array) -> bool:
    """Unsigned 64-bit values at or over 2**63 (Python ints past int64: ``bigint``)."""
    if not pa.types.is_uint64(arr.type) or len(arr) == arr.null_count:
        return False
    return bool(pc.max(arr).as_py() >= 1 << 63)


def _list_hashes(arr: pa.Array) -> np.ndarray:
    """``value_hash`` of each list: its length and each item's hash bound to its position."""
    n = len(arr)
    if pa.types.is_fixed_size_list(arr.type):
        size = arr.type.list_size
        off = np.arange(n + 1, dtype=np.int64) * size
        items = (
            arr.flatten() if arr.null_count == 0 else arr.values.slice(arr.offset * size, n * size)
        )
    else:
        off = np.asarray(arr.offsets, dtype=np.int64)
        items = arr.values.slice(int(off[0]), int(off[-1] - off[0]))
        off = off - off[0]
    lens = off[1:] - off[:-1]
    total = _mix(lens.astype(np.uint64) ^ _TN["len"])
    if len(items):
        owner_start = np.repeat(off[:-1], lens)
        j = np.arange(len(items)) - owner_start
        h = _mix(_value_hashes(items) ^ _lane_table(int(lens.max()))[j])
        prefix = np.zeros(len(items) + 1, np.uint64)
        np.cumsum(h, out=prefix[1:])
        total += prefix[off[1:]] - prefix[off[:-1]]
    return _mix(total ^ _TN["list"])


def _text_column(batch: pa.RecordBatch, name: str) -> np.ndarray:
    """``value_hash`` of a document or namespace column (all None when it is absent)."""
    if name not in batch.schema.names:
        return np.full(batch.num_rows, _NULL_HASH, np.uint64)
    return _value_hashes(batch.column(name))


def _metadata_hashes(batch: pa.RecordBatch, schema: CollectionSchema) -> np.ndarray:
    """Per record, the v2 hash of its metadata dict as ``metadata_rows`` reads it: typed
    values (null: no key), JSON fields parsed, ``metadata_extra`` keys over typed ones."""
    n, names = batch.num_rows, batch.schema.names
    total = np.zeros(n, np.uint64)
    struct_col = batch.column("metadata") if "metadata" in names else None
    typed = {f.name for f in struct_col.type} if struct_col is not None else set()
    overridden: dict[str, list[int]] = {}
    if "metadata_extra" in names:
        extra = batch.column("metadata_extra")
        if pa.types.is_null(extra.type):
            extra = extra.cast(pa.string())
        off, _ = _byte_buffers(extra)
        rows = np.flatnonzero(_valid(extra) & (off[1:] > off[:-1])).tolist()
        if rows:
            texts = extra.take(pa.array(rows, pa.int64())).to_pylist()
            sums = []
            for row, raw in zip(rows, texts, strict=True):
                items = json.loads(raw)
                sums.append(sum(_mix_int(_key_hash(k) ^ value_hash(v)) for k, v in items.items()))
                for k in typed.intersection(items):
                    overridden.setdefault(k, []).append(row)
            total[rows] += np.asarray([x & _MASK for x in sums], dtype=np.uint64)
    if struct_col is not None:
        json_fields = {f.name for f in schema.metadata if f.type == "json"}
        for child_field, child in zip(struct_col.type, struct_col.flatten(), strict=True):
            keep = _valid(child)
            if child_field.name in overridden:
                keep[overridden[child_field.name]] = False
            where = np.flatnonzero(keep)
            if not len(where):
                continue
            if child_field.name in json_fields:
                values = child.take(pa.array(where, pa.int64())).to_pylist()
                hashed = np.fromiter(
                    (value_hash(json.loads(v)) for v in values), np.uint64, count=len(where)
                )
            else:
                hashed = _value_hashes(child)[where]
            total[where] += _mix(hashed ^ _u64(_key_hash(child_field.name)))
    return _mix(total ^ _TN["dict"])


def _id_texts(column: pa.Array) -> pa.Array:
    """The canonical text of each id (``id_text``) as an Arrow string array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    t = column.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return column
    if pa.types.is_integer(t):
        return column.cast(pa.string())  # decimal, as str(int)
    return pa.array([id_text(v) for v in column.to_pylist()], pa.string())


def _record_hashes_v2(
    batch: pa.RecordBatch, schema: CollectionSchema
) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Id texts, id hashes and content hashes (everything but dense vectors), column-wise."""
    ids = _id_texts(batch.column("id"))
    keys = string_hashes(ids)
    body = _mix(_text_column(batch, "document") ^ _TN["document"])
    body += _mix(_text_column(batch, "namespace") ^ _TN["namespace"])
    body += _mix(_metadata_hashes(batch, schema) ^ _TN["metadata"])
    for s in schema.sparse:
        if s.name in batch.schema.names:
            sparse = _value_hashes(batch.column(s.name))
        else:
            sparse = np.full(batch.num_rows, _NULL_HASH, np.uint64)
        body += _mix(sparse ^ _u64(_mix_int(_T["sparse"] ^ _key_hash(s.name))))
    return ids, keys, _mix(_mix(keys ^ _TN["record"]) + body)


# -- version 1: one record at a time -----------------------------------------------------------
def _id_hashes_v1(ids: list[str]) -> np.ndarray:
    return np.fromiter((_hash64(i.encode()) for i in ids), dtype=np.uint64, count=len(ids))


def id_hashes(ids: list[str], *, version: int = DIGEST_VERSION) -> np.ndarray:
    """64-bit hash of each id's canonical text (its bucket is this modulo ``BUCKETS``)."""
    if _check_version(version) == 1:
        return _id_hashes_v1(ids)
    return string_hashes(pa.array(ids, pa.string()))


def id_bucket(ids: list[str], *, version: int = DIGEST_VERSION) -> np.ndarray:
    """Bucket of each id (by its canonical text)."""
    return (id_hashes(ids, version=version) % np.uint64(BUCKETS)).astype(np.int64)


def _check_version(version: int) -> int:
    if version not in VERSIONS:
        raise ConfigError(
            f"digest version {version!r} is not supported (this vecmigrate reads "
            f"{', '.join(map(str, VERSIONS))})",
            hint="upgrade vecmigrate to read digests written by a newer one",
        )
    return version


def _cells(m: np.ndarray, step: float) -> np.ndarray:
    """Grid cell of each value as uint64 (its bits for step 0, or when off the grid)."""
    if step <= 0:
        return _float_bits(m)
    with np.errstate(invalid="ignore", over="ignore"):
        q = np.floor(m / step)
    inside = np.abs(q) < 2.0**62  # False for NaN and Inf
    cells = np.where(inside, q, 0.0).astype(np.int64).view(np.uint64)
    if not inside.all():
        cells = np.where(inside, cells, _float_bits(m) ^ _OFF_GRID)
    return cells


def grid_hashes(m: np.ndarray, keys: np.ndarray, step: float) -> np.ndarray:
    """Per row, a 64-bit hash of its key and its values on a grid of ``step`` (0: exact):
    a sum over coordinates of a bijective mix of (cell, key, position), so moving any one
    value to another cell, or giving the row another key, always changes it."""
    n, dim = m.shape
    out = np.empty(n, np.uint64)
    rows = max(1, _BLOCK // max(dim, 1))
    for start in range(0, n, rows):
        k = keys[start : start + rows]
        block = _cells(m[start : start + rows], step)
        block ^= k[:, None] + _lanes(dim)[None, :]
        total = _mix(block).sum(axis=1, dtype=np.uint64)
        out[start : start + rows] = _mix(total ^ k)
    return out


def exact_hashes(vectors: np.ndarray, keys: np.ndarray, *, finite: bool = False) -> np.ndarray:
    """Version 2's grid of step 0: per row, a 64-bit hash of its key and the exact float32
    bits of its values (one NaN, one zero), two values to a word; as ``grid_hashes``,
    moving any value or giving the row another key always changes it. ``finite``: the
    caller knows there is no NaN (one pass fewer)."""
    v = np.asarray(vectors, dtype=np.float32)
    n, dim = v.shape
    half = (dim + 1) // 2
    lanes = _lane_table(half)[:half]
    out = np.empty(n, np.uint64)
    rows = max(1, _BLOCK // max(half, 1))
    for start in range(0, n, rows):
        k = keys[start : start + rows]
        block = v[start : start + rows]
        canon = block + np.float32(0.0)  # -0.0 + 0.0 is 0.0
        if not finite:
            canon[np.isnan(block)] = np.float32(np.nan)
        if dim % 2:
            canon = np.concatenate([canon, np.zeros((len(canon), 1), np.float32)], axis=1)
        # Explicitly little-endian: value 2i in the low half of word i on every machine.
        bits = np.ascontiguousarray(canon.view(np.uint32), dtype="<u4")
        words = bits.view("<u8").astype(np.uint64, copy=False)
        words ^= k[:, None] + lanes[None, :]
        total = _mix(words).sum(axis=1, dtype=np.uint64)
        out[start : start + rows] = _mix(total ^ k)
    return out


def _prepared(vectors: np.ndarray, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    """The vectors to project and the mask of rows holding NaN or Inf. For cosine a float64
    unit-length copy (rows whose float64 sum of squares is not finite are the bad ones: no
    float32 square overflows it); otherwise the vectors as given (``_project`` widens each
    block to float64: the same products, without a float64 copy of the batch)."""
    if metric is not Metric.COSINE:
        return vectors, ~np.isfinite(vectors).all(axis=1)
    m = vectors.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        squares = np.einsum("ij,ij->i", m, m)
    bad = ~np.isfinite(squares)
    norms = np.sqrt(squares)[:, None]
    with np.errstate(invalid="ignore"):
        ok = (norms > 0) & np.isfinite(norms)
    np.divide(m, norms, out=m, where=ok)  # zero and non-finite rows stay as they are
    return m, bad


def _canonical(value: Any) -> Any:
    """Floats at float32 precision: some engines (Chroma) return float64 metadata 1 ULP off,
    and a 1-ULP change crosses a float32 rounding boundary with probability ~2**-29."""
    if isinstance(value, float):
        return float(np.float32(value)) if abs(value) < 3e38 else value
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def record_hashes(
    batch: pa.RecordBatch, schema: CollectionSchema, *, version: int = DIGEST_VERSION
) -> tuple[list[str], list[int]]:
    """Canonical id text and 64-bit content hash (everything but dense vectors) per record."""
    if _check_version(version) == 2:
        ids, _, hashes = _record_hashes_v2(batch, schema)
        return [str(i) for i in ids.to_pylist()], hashes.tolist()
    return _record_hashes_v1(batch, schema)


def _record_hashes_v1(
    batch: pa.RecordBatch, schema: CollectionSchema
) -> tuple[list[str], list[int]]:
    ids = [id_text(v) for v in batch.column("id").to_pylist()]
    n = batch.num_rows
    names = batch.schema.names
    docs = batch.column("document").to_pylist() if "document" in names else [None] * n
    nss = batch.column("namespace").to_pylist() if "namespace" in names else [None] * n
    sparse = {s.name: batch.column(s.name).to_pylist() for s in schema.sparse if s.name in names}
    metas = metadata_rows(batch, schema)
    hashes = []
    for i in range(n):
        rec = [ids[i], nss[i], docs[i], _canonical(metas[i]), {k: v[i] for k, v in sparse.items()}]
        text = json.dumps(rec, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        hashes.append(_hash64(text.encode()))
    return ids, hashes


@dataclass
class BucketDigest:
    """Sums over the records of one id bucket."""

    count: int = 0
    hash: int = 0
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    grid: dict[str, int] = field(default_factory=dict)


@dataclass
class DigestComparison:
    """Outcome of comparing two digests: ``differing_buckets`` certainly differ;
    ``unsettled_buckets`` differ only in a grid hash (a change, or noise at a cell edge)."""

    equal: bool
    count_a: int
    count_b: int
    differing_buckets: list[int]
    reasons: list[str]
    unsettled_buckets: list[int] = field(default_factory=list)


@dataclass
class CollectionDigest:
    """Order-independent digest of a collection's content."""

    schema_dims: dict[str, int]
    buckets: list[BucketDigest] = field(
        default_factory=lambda: [BucketDigest() for _ in range(BUCKETS)]
    )
    grid_step: float | None = None  # the vector grid's step; None: no grid hashes
    version: int = DIGEST_VERSION  # how records were hashed (see the module docstring)
    projected: bool = True  # False: vectors by their exact bits only (module docstring)

    @property
    def count(self) -> int:
        """Number of records digested."""
        return sum(b.count for b in self.buckets)

    @property
    def content_hash(self) -> str:
        """Hex of the exact part of the digest (all buckets); from version 2 on prefixed
        with the version (``v2:...``) so a report says which digest it shows."""
        text = f"{sum(b.hash for b in self.buckets) & _MASK:016x}"
        return text if self.version == 1 else f"v{self.version}:{text}"

    def merge(self, other: CollectionDigest) -> None:
        """Add another digest of disjoint records (e.g. another partition)."""
        self._comparable(other)
        for mine, theirs in zip(self.buckets, other.buckets, strict=True):
            mine.count += theirs.count
            mine.hash = (mine.hash + theirs.hash) & _MASK
            for name, v in theirs.vectors.items():
                mine.vectors[name] = mine.vectors.get(name, 0) + v
            for name, g in theirs.grid.items():
                mine.grid[name] = (mine.grid.get(name, 0) + g) & _MASK

    def _comparable(self, other: CollectionDigest) -> None:
        if self.version != other.version:
            raise ConfigError(
                f"digests of versions {self.version} and {other.version} cannot be compared",
                hint=f"compute the other side with collection_digest(..., version={self.version})",
            )
        if self.projected != other.projected:
            raise ConfigError(
                "a digest with vector projections cannot be compared with one without",
                hint=f"compute the other side with collection_digest(..., "
                f"projections={self.projected})",
            )

    def compare(self, other: CollectionDigest, *, tolerance: float = 0.0) -> DigestComparison:
        """Equal counts and hashes per bucket, vector sums within ``vector_allowance`` of
        ``tolerance`` (an engine's per-value error) and, when both digests carry grid
        hashes of one step, equal grid hashes (else the bucket is unsettled, not equal).
        Digests of different versions are refused (ConfigError), never called unequal."""
        self._comparable(other)
        reasons: list[str] = []
        differing: list[int] = []
        unsettled: list[int] = []
        gridded = self.grid_step is not None and self.grid_step == other.grid_step
        for i, (a, b) in enumerate(zip(self.buckets, other.buckets, strict=True)):
            why = []
            if a.count != b.count:
                why.append(f"count {a.count} != {b.count}")
            elif a.hash != b.hash:
                why.append("ids, documents or metadata differ")
            names = sorted(set(a.vectors) | set(b.vectors) | set(a.grid) | set(b.grid))
            for name in names:
                dim = self.schema_dims.get(name) or other.schema_dims.get(name) or 1
                va = a.vectors.get(name, np.zeros(PROJECTIONS))
                vb = b.vectors.get(name, np.zeros(PROJECTIONS))
                allowed = vector_allowance(tolerance, dim, max(a.count, b.count))
                # NaN never compares <=: a poisoned sum counts as a difference.
                if not float(np.max(np.abs(va - vb))) <= allowed:
                    why.append(f"vector field {name!r} differs")
            if why:
                differing.append(i)
                reasons.append(f"bucket {i}: " + "; ".join(why))
                continue
            moved = [n for n in names if gridded and a.grid.get(n, 0) != b.grid.get(n, 0)]
            if moved:
                unsettled.append(i)
                reasons.append(
                    f"bucket {i}: vector field {moved[0]!r} moved on the {self.grid_step:g} "
                    "grid (a change above the tolerance, or noise at a cell boundary)"
                )
        equal = not differing and not unsettled
        return DigestComparison(equal, self.count, other.count, differing, reasons, unsettled)

    def to_json(self) -> dict[str, Any]:
        """JSON form, as stored in a dump manifest (``version`` says how it was hashed)."""
        return {
            "version": self.version,
            "algorithm": ALGORITHMS[self.version],
            "count": self.count,
            "content_hash": self.content_hash,
            "dims": self.schema_dims,
            "grid_step": self.grid_step,
            **({} if self.projected else {"projected": False}),
            "buckets": [
                {
                    "count": b.count,
                    "hash": f"{b.hash:016x}",
                    "vectors": {k: [float(x) for x in v] for k, v in sorted(b.vectors.items())},
                    "grid": {k: f"{g:016x}" for k, g in sorted(b.grid.items())},
                }
                for b in self.buckets
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CollectionDigest:
        """Inverse of ``to_json``; also reads version 1 digests (written before digests
        carried a version: their ``algorithm`` names blake2b)."""
        version = data.get("version")
        if version is None:
            algorithm = str(data.get("algorithm", ""))
            version = 1 if algorithm.startswith("blake2b64") else -1
        digest = cls(
            schema_dims=dict(data["dims"]),
            grid_step=data.get("grid_step"),
            version=_check_version(int(version)),
            projected=bool(data.get("projected", True)),
        )
        for b, d in zip(digest.buckets, data["buckets"], strict=True):
            b.count = d["count"]
            b.hash = int(d["hash"], 16)
            b.vectors = {k: np.asarray(v, dtype=np.float64) for k, v in d["vectors"].items()}
            b.grid = {k: int(g, 16) for k, g in d.get("grid", {}).items()}
        return digest


@dataclass
class RecordSignatures:
    """What the digest knows about each record of a batch."""

    ids: list[str]
    hashes: list[int]
    buckets: np.ndarray
    projections: dict[str, np.ndarray]
    grid: dict[str, np.ndarray] = field(default_factory=dict)  # uint64 per record


@dataclass
class _Signed:
    """A batch's signatures as arrays (what ``add`` sums; ``signatures`` lists them)."""

    ids: pa.Array | list[str]
    keys: np.ndarray  # uint64 id hash per record
    hashes: np.ndarray  # uint64 content hash per record
    projections: dict[str, np.ndarray]
    grid: dict[str, np.ndarray]

    @property
    def buckets(self) -> np.ndarray:
        return (self.keys % np.uint64(BUCKETS)).astype(np.int64)


class DigestBuilder:
    """Accumulates a digest batch by batch; thread-safe so partitions can share one. With
    ``tolerance`` (the engines' per-value vector tolerance, 0 for exact storage) it also
    sums grid hashes of that step: any change above it shows, whatever the size.
    ``version`` picks how records are hashed (see the module docstring);
    ``projections=False`` hashes vectors by their exact bits alone (grid step 0)."""

    def __init__(
        self,
        schema: CollectionSchema,
        *,
        tolerance: float | None = None,
        version: int = DIGEST_VERSION,
        projections: bool = True,
    ) -> None:
        self.schema = schema
        self.version = _check_version(version)
        if not projections and self.version < 2:
            raise ConfigError("a digest without projections needs version 2 or later")
        self.projections = projections
        self.step = tolerance if projections else 0.0
        self.digest = CollectionDigest(
            schema_dims={v.name: v.dim for v in schema.vectors},
            grid_step=self.step,
            version=self.version,
            projected=projections,
        )
        self._proj = {v.name: _projection(v.dim) for v in schema.vectors}
        self._lock = threading.Lock()

    def _signed(self, batch: pa.RecordBatch) -> _Signed:
        ids: pa.Array | list[str]
        if self.version == 1:
            ids, content = _record_hashes_v1(batch, self.schema)
            keys = _id_hashes_v1(ids)
            hashes = np.asarray(content, dtype=np.uint64)
        else:
            ids, keys, hashes = _record_hashes_v2(batch, self.schema)
        projections: dict[str, np.ndarray] = {}
        grid: dict[str, np.ndarray] = {}
        if not self.projections:
            for v in self.schema.vectors:
                raw = vectors_or_nan(batch.column(v.name))
                grid[v.name] = exact_hashes(raw, _mix(keys ^ _salt(f"field:{v.name}")))
            return _Signed(ids, keys, hashes, projections, grid)
        # High bits of a remix: within a bucket the low bits of ``keys`` are all alike.
        weights = 1.0 + (_mix(keys ^ _salt("weight")) >> np.uint64(11)) * 2.0**-53
        for v in self.schema.vectors:
            raw = vectors_or_nan(batch.column(v.name))
            m, bad = _prepared(raw, v.metric)
            field_keys = _mix(keys ^ _salt(f"field:{v.name}"))
            if self.step is not None:
                exact = self.version >= 2 and self.step <= 0  # float32 bits, not cells
                grid[v.name] = (
                    exact_hashes(raw, field_keys, finite=not bad.any())
                    if exact
                    else grid_hashes(np.asarray(m, np.float64), field_keys, self.step)
                )
            if bad.any():
                m = np.array(m, np.float64)  # writable, and cells are taken in float64
                # NaN/Inf would poison the projection sums: such vectors are told apart by
                # their exact bits, in the exact part of the digest, and project to zero.
                if self.version >= 2:
                    hashes[bad] += exact_hashes(raw[bad], field_keys[bad])
                else:
                    hashes[bad] += grid_hashes(m[bad], field_keys[bad], 0.0)
                m[bad] = 0.0
            projections[v.name] = _project(m, self._proj[v.name]) * weights[:, None]
        return _Signed(ids, keys, hashes, projections, grid)

    def signatures(self, batch: pa.RecordBatch) -> RecordSignatures:
        """Per-record id text, content hash, bucket, vector projections and grid hashes."""
        sig = self._signed(batch)
        ids = sig.ids if isinstance(sig.ids, list) else [str(i) for i in sig.ids.to_pylist()]
        return RecordSignatures(ids, sig.hashes.tolist(), sig.buckets, sig.projections, sig.grid)

    def add(self, batch: pa.RecordBatch) -> None:
        """Digest one batch in the schema's layout."""
        self.add_keyed(batch)

    def add_keyed(self, batch: pa.RecordBatch) -> np.ndarray:
        """``add``, returning each record's 64-bit id hash (``id_hashes``)."""
        if batch.num_rows == 0:
            return np.zeros(0, np.uint64)
        sig = self._signed(batch)
        buckets = sig.buckets
        counts = np.bincount(buckets, minlength=BUCKETS)
        hashes = np.zeros(BUCKETS, np.uint64)
        np.add.at(hashes, buckets, sig.hashes)  # wraps modulo 2**64
        grids = {}
        for name, per_record in sig.grid.items():
            grids[name] = np.zeros(BUCKETS, np.uint64)
            np.add.at(grids[name], buckets, per_record)
        sums = {}
        for name, proj in sig.projections.items():
            sums[name] = np.stack(
                [
                    np.bincount(buckets, weights=proj[:, p], minlength=BUCKETS)
                    for p in range(PROJECTIONS)
                ],
                axis=1,
            )
        with self._lock:
            for i in np.flatnonzero(counts).tolist():
                bd = self.digest.buckets[i]
                bd.count += int(counts[i])
                bd.hash = (bd.hash + int(hashes[i])) & _MASK
                for name, g in grids.items():
                    bd.grid[name] = (bd.grid.get(name, 0) + int(g[i])) & _MASK
                for name, s in sums.items():
                    bd.vectors[name] = bd.vectors.get(name, 0) + s[i]
        return sig.keys


class Transform(Protocol):
    """What verify needs of a compiled mapping."""

    target: CollectionSchema

    def apply(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[Any]]:
        """The mapped batch and the records it refused."""
        ...


def vector_allowance(tolerance: float, dim: int, records: int = 1) -> float:
    """How far summed (id-weighted) projections of ``records`` records may drift within
    ``tolerance``: each record by at most its weight times ``tolerance * sqrt(dim)``."""
    return max(records, 1) * WEIGHT_MAX * (tolerance * float(np.sqrt(dim)) + 1e-9)


def scan_rows(schema: CollectionSchema) -> int:
    """Rows per scanned batch for a digest: about ``_BATCH_BYTES`` of vectors, within
    [2,000, 50,000] (fewer engine round trips and numpy calls, bounded memory)."""
    width = 4 * max(1, sum(v.dim for v in schema.vectors))
    return max(2000, min(50_000, _BATCH_BYTES // width))


def collection_digest(
    connector: Connector,
    name: str,
    *,
    schema: CollectionSchema | None = None,
    workers: int = 2,
    batch_rows: int | None = None,
    transform: Transform | None = None,
    tolerance: float | None = None,
    version: int = DIGEST_VERSION,
    projections: bool = True,
) -> CollectionDigest:
    """Digest a whole collection by scanning its partitions concurrently.

    With ``transform`` (a compiled mapping), the digest is of what the mapping makes of
    each record, laid out as ``transform.target``: what a mapped copy should contain.
    With ``tolerance``, it carries grid hashes of that step (see ``DigestBuilder``).
    ``version``: how records are hashed (to compare with a stored digest of another one);
    ``projections=False``: vectors by their exact bits alone (see ``DigestBuilder``).
    """
    schema = schema or connector.describe(name)
    layout = transform.target if transform else schema
    builder = DigestBuilder(layout, tolerance=tolerance, version=version, projections=projections)
    rows = batch_rows or scan_rows(schema)

    def run(partition: Any) -> None:
        for batch, _ in scan_resuming(connector, name, partition, schema=schema, batch_rows=rows):
            builder.add(transform.apply(batch)[0] if transform else batch)

    parts = connector.partitions(name, workers)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(run, parts))
    return builder.digest
