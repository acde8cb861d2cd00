"""The tests' own connection to a job store's database (SQLite file or PostgreSQL URL), separate from the store's:
to read rows the store's API does not return (every blob of a job) or to change rows as another process or
an operator would (an older schema version, uploads from an hour ago)."""

from __future__ import annotations

import sqlite3


def execute(store, sql: str, params: tuple = ()) -> list[dict]:
    """Run one statement (with `?` placeholders) on the store's database in its own committed transaction;
    the rows it returns, as dicts."""
    if getattr(store, "url", None):  # PostgreSQL
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(store.url, autocommit=True, row_factory=dict_row) as db:
            cursor = db.execute(sql.replace("?", "%s"), params)
            return list(cursor.fetchall()) if cursor.description else []
    db = sqlite3.connect(store.db_path, timeout=30)
    try:
        db.row_factory = sqlite3.Row
        with db:  # commits
            rows = db.execute(sql, params).fetchall()
        return [dict(row) for row in rows]
    finally:
        db.close()
