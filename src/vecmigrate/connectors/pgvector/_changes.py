"""The pgvector change feed (``ChangeFeed``, used by ``vecmigrate sync``), used only by
``connectors/pgvector.py``.

A row trigger (plus a statement trigger for TRUNCATE) records every write to a table in a
change table ``vm_changes_<table>`` (seq, id, op, xid, at). Positions are snapshots
(``pg_current_snapshot()``): the changes between two positions are the rows whose writing
transaction is visible in the later snapshot but not in the earlier one, so a reader takes
exactly what committed in between, whatever order transactions commit in.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import psycopg
from psycopg import sql

from vecmigrate.connectors.base import Change
from vecmigrate.connectors.pgvector._foreign import ROW_ID
from vecmigrate.connectors.pgvector._schema import layout_of
from vecmigrate.connectors.pgvector._sql import regclass
from vecmigrate.errors import ConfigError
from vecmigrate.model import CollectionSchema

_OPS = {"U": "upsert", "D": "delete", "T": "truncate"}
T = TypeVar("T")


class _Host(Protocol):
    """What ``ChangeCapture`` needs of the connector it is mixed into."""

    namespace: str

    def _conn(self) -> psycopg.Connection[Any]: ...
    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...
    def _table(self, name: str) -> sql.Composed: ...
    def _query(self, query: Any, params: Any = None) -> list[tuple[Any, ...]]: ...
    def describe(self, name: str) -> CollectionSchema: ...
    def list_collections(self) -> list[str]: ...
    def change_capture_installed(self, name: str) -> bool: ...


def capture_names(name: str) -> tuple[str, str, str]:
    """Change table, trigger function and trigger names for table ``name``."""
    # Long names are shortened with a hash so the derived names fit in 63 bytes.
    base = name if len(name) <= 40 else f"{name[:30]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return f"vm_changes_{base}", f"vm_capture_{base}", f"vm_capture_{base}_trg"


def _run(host: _Host, what: str, *statements: tuple[sql.Composed, Any]) -> int:
    """Run ``statements`` in one transaction; returns the last one's row count."""
    return host._call(what, _execute, host._conn(), statements)


def _execute(
    conn: psycopg.Connection[Any], statements: tuple[tuple[sql.Composed, Any], ...]
) -> int:
    with conn.transaction(), conn.cursor() as cur:
        for statement, params in statements:
            cur.execute(statement, params)
        return int(cur.rowcount)


class ChangeCapture:
    """The ``ChangeFeed`` methods of ``PgvectorConnector`` (a mixin: see the module doc)."""

    def install_change_capture(self: _Host, name: str) -> str:
        """A trigger records every insert, update, delete and truncate of ``name`` in a change
        table (seq, id, op, xid, at). Rows carry the writing transaction's id so readers take
        exactly what committed between two snapshots, whatever order transactions commit in."""
        # describe refuses a table that is not a vector collection; the key may be any column.
        layout = layout_of(self.describe(name))
        if layout.key == ROW_ID:  # a row's location moves when the row is updated
            raise ConfigError(
                f"table {name!r} is keyed by its rows' location (?id_field={ROW_ID}), which an "
                "update changes: its changes cannot be followed by id",
                hint="sync it by digests (--mode generic), or name an id column with ?id_field=",
            )
        key, id_type = sql.Identifier(layout.key), layout.key_type
        table, fn, trg = capture_names(name)
        ch, fq = (
            self._table(table),
            sql.SQL("{}.{}").format(sql.Identifier(self.namespace), sql.Identifier(fn)),
        )
        body = sql.SQL(
            "BEGIN "
            "IF TG_OP = 'TRUNCATE' THEN INSERT INTO {ch} (id, op) VALUES (NULL, 'T'); RETURN NULL; "
            "END IF; "
            "IF TG_OP = 'DELETE' THEN INSERT INTO {ch} (id, op) VALUES (OLD.{k}, 'D'); "
            "RETURN NULL; END IF; "
            "IF TG_OP = 'UPDATE' THEN IF OLD.{k} IS DISTINCT FROM NEW.{k} THEN "
            "INSERT INTO {ch} (id, op) VALUES (OLD.{k}, 'D'); END IF; END IF; "
            "INSERT INTO {ch} (id, op) VALUES (NEW.{k}, 'U'); RETURN NULL; END"
        ).format(ch=ch, k=key)
        statements = [
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (seq bigserial PRIMARY KEY, id {}, "
                "op char(1) NOT NULL, xid xid8 NOT NULL DEFAULT pg_current_xact_id(), "
                "at timestamptz NOT NULL DEFAULT clock_timestamp())"
            ).format(ch, sql.SQL(id_type)),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (xid)").format(
                sql.Identifier(f"{table}_xid"), ch
            ),
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS {}"
            ).format(fq, sql.Literal(body.as_string(self._conn()))),
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                sql.Identifier(trg), self._table(name)
            ),
            sql.SQL(
                "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} "
                "FOR EACH ROW EXECUTE FUNCTION {}()"
            ).format(sql.Identifier(trg), self._table(name), fq),
            sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                sql.Identifier(f"{trg}_t"), self._table(name)
            ),
            sql.SQL(
                "CREATE TRIGGER {} AFTER TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()"
            ).format(sql.Identifier(f"{trg}_t"), self._table(name), fq),
        ]
        _run(self, f"install change capture on {name!r}", *((s, None) for s in statements))
        return f"{self.namespace}.{table}"

    def remove_change_capture(self: _Host, name: str) -> None:
        """Drop the triggers, function and change table of ``name`` (missing is a no-op)."""
        table, fn, trg = capture_names(name)
        if name in self.list_collections():
            for t in (trg, f"{trg}_t"):
                self._query(
                    sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                        sql.Identifier(t), self._table(name)
                    )
                )
        self._query(
            sql.SQL("DROP FUNCTION IF EXISTS {}.{}()").format(
                sql.Identifier(self.namespace), sql.Identifier(fn)
            )
        )
        self._query(sql.SQL("DROP TABLE IF EXISTS {}").format(self._table(table)))

    def change_capture_installed(self: _Host, name: str) -> bool:
        """The change table exists and the row trigger is on ``name``."""
        table, _, trg = capture_names(name)
        rows = self._query(
            "SELECT to_regclass(%s) IS NOT NULL AND EXISTS (SELECT 1 FROM pg_trigger "
            "WHERE tgrelid = to_regclass(%s) AND tgname = %s)",
            (regclass(self.namespace, table), regclass(self.namespace, name), trg),
        )
        return bool(rows[0][0])

    def change_capture_id(self: _Host, name: str) -> str | None:
        """The change table's oid: a new one after the capture is removed and reinstalled."""
        if not self.change_capture_installed(name):
            return None
        table = regclass(self.namespace, capture_names(name)[0])
        return str(self._query("SELECT to_regclass(%s)::oid::text", (table,))[0][0])

    def change_position(self: _Host, name: str) -> str:
        """The current snapshot: every transaction it sees as committed is covered."""
        return str(self._query("SELECT pg_current_snapshot()::text")[0][0])

    def changes(
        self: _Host, name: str, since: str, until: str, *, after_seq: int = 0, limit: int = 5000
    ) -> list[Change]:
        """Changes of transactions visible in ``until`` but not in ``since``, by seq."""
        rows = self._query(
            sql.SQL(
                "SELECT seq, id, op, extract(epoch FROM at)::float8 FROM {} "
                "WHERE xid >= pg_snapshot_xmin(%s::pg_snapshot) AND seq > %s "
                "AND pg_visible_in_snapshot(xid, %s::pg_snapshot) "
                "AND NOT pg_visible_in_snapshot(xid, %s::pg_snapshot) ORDER BY seq LIMIT {}"
            ).format(self._table(capture_names(name)[0]), sql.Literal(limit)),
            (since, after_seq, until, since),
        )
        # A uuid key is a string id in vecmigrate.
        ids = [str(r[1]) if isinstance(r[1], uuid.UUID) else r[1] for r in rows]
        return [
            Change(int(r[0]), rid, _OPS[r[2]], float(r[3]))  # type: ignore[arg-type]
            for r, rid in zip(rows, ids, strict=True)
        ]

    def change_backlog(self: _Host, name: str, since: str) -> tuple[int, float]:
        """Committed changes not visible in ``since``, and the age of the oldest (DB clock)."""
        n, age = self._query(
            sql.SQL(
                "SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(at)), 0)"
                "::float8 FROM {} WHERE xid >= pg_snapshot_xmin(%s::pg_snapshot) "
                "AND NOT pg_visible_in_snapshot(xid, %s::pg_snapshot)"
            ).format(self._table(capture_names(name)[0])),
            (since, since),
        )[0]
        return int(n), float(age)

    def prune_changes(self: _Host, name: str, upto: str) -> int:
        """Delete the changes of transactions visible in ``upto`` (already applied)."""
        query = sql.SQL(
            "DELETE FROM {} WHERE xid < pg_snapshot_xmax(%s::pg_snapshot) "
            "AND pg_visible_in_snapshot(xid, %s::pg_snapshot)"
        ).format(self._table(capture_names(name)[0]))
        return _run(self, f"prune changes of {name!r}", (query, (upto, upto)))
