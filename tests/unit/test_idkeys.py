"""Id keys tell repeated ids apart from unique ones, in memory and once spilled to shard
files (memory flat at any row count), for integer and text ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import vecmigrate.idkeys as idkeys
from vecmigrate.idkeys import IdKeys, SeenKeys


@pytest.mark.parametrize("text", [False, True])
@pytest.mark.parametrize("held", [1_000, 1 << 20])  # spilled / all in memory
def test_a_repeat_is_found_whether_keys_are_held_or_spilled(
    text: bool, held: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(idkeys, "_HELD", held)

    def column(ids: range | list[int]) -> pa.Array:
        return pa.array([f"doc-{i}" for i in ids] if text else list(ids))

    unique, repeat = IdKeys(), IdKeys()
    for start in range(0, 20_000, 700):
        batch = range(start, min(start + 700, 20_000))
        unique.add(column(batch))
        repeat.add(column(batch))
    repeat.add(column([3]))  # sent again long after its first copy
    spill = unique._spill
    assert (spill is not None) == (held < 20_000)
    if spill is not None:  # sequential integers spread over every shard
        assert all(p.stat().st_size > 0 for p in unique._shard_files())
    assert unique.repeated() is False
    assert repeat.repeated() is True
    if spill is not None:
        assert not Path(spill.name).exists()  # the shard files are removed


def test_seen_keys_tells_first_copies_from_repeats_across_many_batches() -> None:
    """Against a Python set, over batches that repeat keys within and across batches."""
    rng = np.random.default_rng(3)
    seen, reference = SeenKeys(), set()
    for _ in range(300):
        keys = rng.integers(0, 20_000, size=int(rng.integers(0, 200))).astype(np.uint64)
        got = seen.first_seen(keys)
        want = []
        for k in keys.tolist():
            want.append(k not in reference)
            reference.add(k)
        assert got.tolist() == want


def test_seen_keys_hold_flat_memory_never_miss_a_repeat_and_rarely_call_a_new_key_seen() -> None:
    """2M distinct keys (sequential integer ids, the hardest spread) then all of them
    again: the bitset is the same 32 MiB throughout, every repeat is seen, and new keys
    are taken for repeats rarely (an upsert where an insert would do)."""
    seen = SeenKeys()
    size = seen._words.nbytes
    keys = np.arange(2_000_000, dtype=np.uint64)
    fresh = np.concatenate([seen.first_seen(b) for b in np.array_split(keys, 400)])
    assert seen._words.nbytes == size == 32 * 2**20
    assert fresh.mean() > 0.999  # false "seen" rate: ~0.02 % at 2M keys
    again = np.concatenate([seen.first_seen(b) for b in np.array_split(keys, 400)])
    assert not again.any()
