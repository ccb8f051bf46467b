"""The PostgreSQL idempotency store's SQL: the table's DDL and the statements of one table (pure text)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def quote_table(table: str) -> str:
    """``"name"`` or ``"schema"."name"``; raises ValueError for anything else."""
    # Quoted, so a reserved word works as a name and the case configured is the case created.
    if not _TABLE.match(table):
        raise ValueError(f"not a table name: {table!r} (expected name or schema.name, letters/digits/_)")
    return ".".join(f'"{part}"' for part in table.split("."))


def create_table_sql(table: str) -> str:
    """The DDL that creates the store's table and its expiry index (idempotent: ``IF NOT EXISTS``).

    Run it in a migration when the application may not create tables (``create_table: false``). The
    name is quoted, so it is case-sensitive, and a schema (``schema.table``) must exist already.
    """
    quoted = quote_table(table)
    index = f'"{table.rpartition(".")[2]}_expires_at_idx"'  # created in the table's schema
    return (
        f"CREATE TABLE IF NOT EXISTS {quoted} (\n"
        "    namespace text NOT NULL,\n"
        "    key text NOT NULL,\n"
        "    token text,\n"
        "    expires_at timestamptz NOT NULL,\n"
        "    PRIMARY KEY (namespace, key)\n"
        ");\n"
        f"CREATE INDEX IF NOT EXISTS {index} ON {quoted} (expires_at);\n"
    )


class Statements:
    """The store's SQL for one table; constant text, so asyncpg prepares each once per connection."""

    def __init__(self, table: str) -> None:
        t = quote_table(table)
        # $3 is the new token (NULL inserts the key as done: the transactional mode); $4 seconds.
        self.claim = (
            f"INSERT INTO {t} AS cur (namespace, key, token, expires_at)"
            " VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4::float8))"
            " ON CONFLICT (namespace, key) DO UPDATE"
            " SET token = EXCLUDED.token, expires_at = EXCLUDED.expires_at"
            " WHERE cur.expires_at <= clock_timestamp() RETURNING true"
        )
        self.read = (
            "SELECT token IS NULL AS done, EXTRACT(EPOCH FROM expires_at - clock_timestamp())::float8 AS left"
            f" FROM {t} WHERE namespace = $1 AND key = $2"
        )
        self.complete = (
            f"UPDATE {t} SET token = NULL, expires_at = clock_timestamp() + make_interval(secs => $4::float8)"
            " WHERE namespace = $1 AND key = $2 AND token = $3"
        )
        self.release = f"DELETE FROM {t} WHERE namespace = $1 AND key = $2 AND token = $3"
        self.extend = (
            f"UPDATE {t} SET expires_at = clock_timestamp() + make_interval(secs => $4::float8)"
            " WHERE namespace = $1 AND key = $2 AND token = $3 AND expires_at > clock_timestamp()"
            " RETURNING true"
        )
        # ctid = ANY(ARRAY(...)) is a TID scan; SKIP LOCKED lets several instances purge side by side and
        # leaves alone a row someone is re-claiming right now (the outer check re-tests its expiry).
        self.purge = (
            f"DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t}"
            " WHERE expires_at <= clock_timestamp() LIMIT $1 FOR UPDATE SKIP LOCKED))"
            " AND expires_at <= clock_timestamp()"
        )


def describe_server(dsn: str) -> str:
    """``host:port/database`` of a PostgreSQL DSN, without user or password (for error messages)."""
    parts = urlsplit(dsn)
    hosts = parts.netloc.rpartition("@")[2] or "localhost"
    if not re.search(r":\d+$", hosts):
        hosts += ":5432"
    user = parts.netloc.rpartition("@")[0].partition(":")[0]
    return f"{hosts}/{parts.path.lstrip('/') or user or 'postgres'}"
