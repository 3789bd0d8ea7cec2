"""describe() of a pgvector table made by hand infers ids, dims, metric and types."""

from __future__ import annotations

from typing import Any

import psycopg

from vecmigrate.connectors import connect
from vecmigrate.model import IdType, Metric


def test_describe_and_scan_a_hand_made_table(postgres: Any) -> None:
    with psycopg.connect(postgres.dsn, autocommit=True) as db:
        db.execute("DROP TABLE IF EXISTS items")
        db.execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, content text, embedding vector(3), "
            "title varchar(20), price real, tags text[], extra jsonb, created timestamptz)"
        )
        db.execute("CREATE INDEX ON items USING hnsw (embedding vector_ip_ops)")
        db.execute(
            "INSERT INTO items VALUES (1, 'a', '[1,2,3]', 't', 1.5, '{x}', '{\"k\": 1}', now()), "
            "(2, 'b', '[4,5,6]', NULL, NULL, NULL, NULL, NULL)"
        )
    with connect(postgres.uri()) as conn:
        schema = conn.describe("items")
        assert schema.id_type is IdType.INT and schema.has_document
        assert schema.engine_settings["document_column"] == "content"
        v = schema.vector
        assert (v.name, v.dim, v.metric, v.index and v.index.kind) == (
            "embedding",
            3,
            Metric.DOT,
            "hnsw",
        )
        types = {m.name: m.type for m in schema.metadata}
        assert types == {
            "title": "string",
            "price": "float64",
            "tags": "list<string>",
            "extra": "json",
            "created": "json",
        }
        assert "created.type" in schema.engine_settings
        part = conn.partitions("items", 2)
        rows = [
            r for p in part for b, _ in conn.scan("items", p, schema=schema) for r in b.to_pylist()
        ]
        assert sorted(r["id"] for r in rows) == [1, 2]
        one = next(r for r in rows if r["id"] == 1)
        assert one["embedding"] == [1.0, 2.0, 3.0]
        assert one["document"] == "a" and one["metadata"]["tags"] == ["x"]
        assert one["metadata"]["extra"] == '{"k":1}' and one["metadata"]["created"].startswith(
            '"20'
        )


def test_tsvector_source_reads_the_expressions_postgresql_prints() -> None:
    """``pg_get_expr`` of generated columns and index expressions: the configuration and
    the one column a ``to_tsvector`` is over, or None when it is over anything else."""
    from vecmigrate.connectors.pgvector._fulltext import tsvector_source

    assert tsvector_source("to_tsvector('english'::regconfig, content)") == ("english", "content")
    assert tsvector_source("to_tsvector('english'::regconfig, (text)::text)") == ("english", "text")
    coalesced = "to_tsvector('pg_catalog.simple'::regconfig, COALESCE(body, ''::text))"
    assert tsvector_source(coalesced) == ("pg_catalog.simple", "body")
    quoted = "to_tsvector('english'::regconfig, (\"Page Text\")::text)"
    assert tsvector_source(quoted) == ("english", "Page Text")
    two = "to_tsvector('english'::regconfig, ((COALESCE(title, ''::text) || ' '::text) || body))"
    assert tsvector_source(two) is None
    assert (
        tsvector_source("setweight(to_tsvector('english'::regconfig, body), 'A'::\"char\")") is None
    )
    assert tsvector_source("lower(body)") is None
