"""64-bit keys of record ids, computed a column at a time: to tell whether any id repeats
across many batches without keeping the ids themselves. Memory stays flat at any row
count: past ``_HELD`` keys they are spilled to temporary files, one per shard of the key
space, and each shard is sorted on its own."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from vecmigrate.verify.digest import id_text, string_hashes

_HELD = 1 << 18  # keys held in memory before they are spilled (2 MiB)
_SHARD_BITS = 6  # 64 shards: 10M ids spill 1.2 MiB per shard
# Spilled keys are multiplied by this odd constant (a bijection of uint64: equal keys stay
# equal, different ones different), which spreads sequential integer ids over the shards.
_SPREAD = np.uint64(0x9E3779B97F4A7C15)
_SPREAD_TOO = np.uint64(0xBF58476D1CE4E5B9)  # splitmix64's: a second, independent position
_SEEN_BITS = 28  # SeenKeys' bitset: 2**28 bits, 32 MiB


def id_keys(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """One uint64 per id: integer ids as themselves (exact), others by a 64-bit hash of
    their bytes (so equal keys may, rarely, be two different ids)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if isinstance(column.type, pa.BaseExtensionType):  # uuid ids: their 16 bytes
        column = column.storage
    t = column.type
    if pa.types.is_integer(t) and not column.null_count:
        return np.asarray(column.cast(pa.int64(), safe=False)).view(np.uint64)
    if pa.types.is_fixed_size_binary(t):
        column = column.cast(pa.binary())
    elif not (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    ):
        column = pa.array([id_text(v) for v in column.to_pylist()], pa.string())
    return string_hashes(column)


class IdKeys:
    """The keys of every id added so far (see the module's docstring)."""

    def __init__(self) -> None:
        self._held: list[np.ndarray] = []
        self._held_count = 0
        self._spill: tempfile.TemporaryDirectory[str] | None = None

    def add(self, column: pa.Array | pa.ChunkedArray) -> None:
        """Remember the ids of one column."""
        self.extend(id_keys(column))

    def extend(self, keys: np.ndarray) -> None:
        """Remember keys computed by ``id_keys`` (or the digest's id hashes) elsewhere."""
        self._held.append(np.asarray(keys, np.uint64))
        self._held_count += len(keys)
        if self._held_count >= _HELD:
            self._spill_held()

    def repeated(self) -> bool:
        """Whether a key occurs twice: an id added twice, or (rarely, for hashed ids) two
        ids sharing a key. Callers confirm on the ids themselves before refusing. Ends
        the set: the spilled files are removed."""
        if self._spill is None:
            held = np.concatenate(self._held) if self._held else np.zeros(0, np.uint64)
            self._held, self._held_count = [], 0
            return _has_equal(held)
        self._spill_held()
        try:
            return any(_has_equal(np.fromfile(p, np.uint64)) for p in self._shard_files())
        finally:
            self._spill.cleanup()
            self._spill = None

    def _spill_held(self) -> None:
        """Append the keys held in memory to their shards' files."""
        if not self._held:
            return
        keys = np.concatenate(self._held) * _SPREAD
        self._held, self._held_count = [], 0
        if self._spill is None:
            self._spill = tempfile.TemporaryDirectory(prefix="vecmigrate-idkeys-")
        keys.sort()  # by shard (the top bits): one sort in place, no argsort and gather
        shard = keys >> np.uint64(64 - _SHARD_BITS)
        bounds = np.searchsorted(shard, np.arange((1 << _SHARD_BITS) + 1, dtype=np.uint64))
        for i, path in enumerate(self._shard_files()):
            if bounds[i + 1] > bounds[i]:
                with path.open("ab") as f:
                    keys[bounds[i] : bounds[i + 1]].tofile(f)

    def _shard_files(self) -> list[Path]:
        assert self._spill is not None
        root = Path(self._spill.name)
        return [root / f"shard-{i:02d}.u64" for i in range(1 << _SHARD_BITS)]


def _has_equal(keys: np.ndarray) -> bool:
    """Whether two of ``keys`` are equal (sorted in place)."""
    keys.sort()
    return bool((keys[1:] == keys[:-1]).any())


class SeenKeys:
    """Which keys were seen before, for telling an id's first copy from a repeat in a
    load: two bits per key in a fixed bitset of ``2**bits`` bits (a Bloom filter; 32 MiB),
    so memory stays flat at any row count (sorted runs of the keys took 80 MB at 10M and
    twice that while merging). A key seen before always looks seen; one not seen may look
    seen too (two ids sharing a key, or bits set by others: ~0.6 % of keys at 10M, ~10 %
    at 50M), so callers must treat "seen" as "maybe seen" (an upsert where an insert would
    do)."""

    def __init__(self, bits: int = _SEEN_BITS) -> None:
        self._shift = np.uint64(64 - bits)
        self._words = np.zeros(1 << (bits - 6), np.uint64)

    def first_seen(self, keys: np.ndarray) -> np.ndarray:
        """Mask of ``keys`` not seen before (nor earlier in ``keys``); all become seen."""
        keys = np.asarray(keys, np.uint64)
        _, first = np.unique(keys, return_index=True)
        new = np.zeros(len(keys), bool)
        new[first] = True
        # Two positions from the top bits of two bijective mixes of the key: integer ids
        # are their own keys, so consecutive ids must not land on consecutive bits.
        one = keys * _SPREAD
        two = (one ^ (one >> np.uint64(29))) * _SPREAD_TOO
        places = []
        seen = np.ones(len(keys), bool)  # both of its bits set already
        for pos in (one >> self._shift, two >> self._shift):
            word, bit = pos >> np.uint64(6), np.uint64(1) << (pos & np.uint64(63))
            seen &= (self._words[word] & bit) != 0
            places.append((word, bit))
        for word, bit in places:
            np.bitwise_or.at(self._words, word, bit)
        return new & ~seen
