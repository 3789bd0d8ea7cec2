"""64-bit keys of record ids, computed a column at a time: to tell whether any id repeats
across many batches without keeping the ids themselves (8 bytes per row, one sort)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from vecmigrate.verify.digest import id_text, string_hashes


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
    """The keys of every id added so far."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []

    def add(self, column: pa.Array | pa.ChunkedArray) -> None:
        """Remember the ids of one column."""
        self._parts.append(id_keys(column))

    def extend(self, keys: np.ndarray) -> None:
        """Remember keys computed by ``id_keys`` (or the digest's id hashes) elsewhere."""
        self._parts.append(keys)

    def repeated(self) -> bool:
        """Whether a key occurs twice: an id added twice, or (rarely, for hashed ids) two
        ids sharing a key. Callers confirm on the ids themselves before refusing."""
        if not self._parts:
            return False
        ordered = np.sort(np.concatenate(self._parts))
        self._parts = [ordered]
        return bool((ordered[1:] == ordered[:-1]).any())
