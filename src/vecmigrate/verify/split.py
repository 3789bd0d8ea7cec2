"""Verifying a ``namespaces: {to: collections}`` copy: every target collection against
the source records of its namespace.

The source is scanned once; each batch is split by namespace and digested per namespace
(after the copy's mapping, without the namespace column, skipping the records the copy
refused), then each target collection's digest is compared with its namespace's. A
namespace whose records have no target collection fails the check: nothing is verified
by looking at one collection only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vecmigrate.connectors.base import Connector
from vecmigrate.mapping import MappingSpec, build_mapping
from vecmigrate.pipeline.fanout import split_by_namespace
from vecmigrate.retry import scan_resuming
from vecmigrate.verify.digest import CollectionDigest, DigestBuilder, collection_digest, id_text


def refused_ids(dead_letter_dir: str | None) -> set[str]:
    """Canonical ids of the records a copy dead-lettered (none: empty)."""
    if not dead_letter_dir or not Path(dead_letter_dir).is_dir():
        return set()
    table = pq.read_table(dead_letter_dir, columns=["id"])
    return {id_text(v) for v in table.column("id").to_pylist()}


def namespace_digests(
    source: Connector,
    collection: str,
    target: Connector,
    spec: MappingSpec,
    target_name: str,
    skip: set[str],
) -> dict[str | None, CollectionDigest]:
    """Digest per namespace of what the copy should have written: the source scanned
    once, mapped as the copy maps it, without the namespace column, ``skip`` ids left out."""
    schema = source.describe(collection)
    mapping = build_mapping(schema, target.capabilities, spec, name=target_name, fan_out=True)
    builders: dict[str | None, DigestBuilder] = {}
    for part in source.partitions(collection, 1):
        for batch, _ in scan_resuming(source, collection, part, schema=schema, batch_rows=5000):
            for namespace, rows in split_by_namespace(batch):
                if skip:
                    ids = [id_text(v) for v in rows.column("id").to_pylist()]
                    rows = rows.filter(pa.array(np.array([i not in skip for i in ids], bool)))
                if not mapping.is_identity:
                    rows = mapping.apply(rows)[0]
                if "namespace" in rows.schema.names:
                    rows = rows.drop_columns(["namespace"])
                builder = builders.setdefault(namespace, DigestBuilder(mapping.target))
                builder.add(rows)
    return {ns: b.digest for ns, b in builders.items()}


def verify_split(
    source: Connector,
    target: Connector,
    collection: str,
    result: Any,
    spec: MappingSpec,
) -> list[dict[str, Any]]:
    """Checks for a fanned-out copy (``result`` is its ``CopyResult``): the total row
    count, one content check per target collection, and one failing check per namespace
    that has records but no collection."""
    skip = refused_ids(result.dead_letter_dir)
    expected = namespace_digests(source, collection, target, spec, result.target_collection, skip)
    tol = max(source.capabilities.vector_tolerance, target.capabilities.vector_tolerance)
    written = {c["namespace"]: c["name"] for c in result.target_collections}
    total_src = source.count(collection)
    total_tgt = sum(target.count(name) for name in written.values())
    checks = [
        {
            "name": "row count",
            "passed": total_tgt == total_src - result.dead_letters,
            "detail": f"source {total_src:,} - refused {result.dead_letters:,} = "
            f"{total_src - result.dead_letters:,}; {len(written)} target collections "
            f"{total_tgt:,}",
        }
    ]
    for namespace, name in sorted(written.items()):
        want = expected.get(namespace) or CollectionDigest(schema_dims={})
        got = collection_digest(target, name)
        cmp = want.compare(got, tolerance=tol)
        detail = (
            f"namespace {namespace!r}: source {want.count:,} records, {name!r} {got.count:,}; "
            f"{want.content_hash} vs {got.content_hash}; vectors within {tol:g}"
        )
        if not cmp.equal:
            detail += f"; {len(cmp.differing_buckets)} of the id buckets differ"
        checks.append({"name": f"content digest {name}", "passed": cmp.equal, "detail": detail})
    for namespace, digest in sorted(expected.items(), key=lambda kv: str(kv[0])):
        if namespace not in written and digest.count:
            checks.append(
                {
                    "name": f"namespace {namespace!r}",
                    "passed": False,
                    "detail": f"{digest.count:,} source records were not refused and have "
                    "no target collection",
                }
            )
    return checks
