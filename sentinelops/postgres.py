"""PostgreSQL URLs and databases, wherever the server runs: names, redaction, Dagster's
storage URL, and creating a database that is missing. Knows nothing of where the server is
(that is db.database_url) nor of the embedded server, which uses it."""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

REDACTED = "***"


def redact_password(url: str) -> str:
    """`url` with its password (embedded server's or DATABASE_URL's) shown as `***`."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):  # a `key=value` connection string
        params = conninfo_to_dict(url)
        if not params.get("password"):
            return url
        return make_conninfo(**{**params, "password": REDACTED})  # type: ignore[arg-type]
    netloc = parts.netloc
    userinfo, _, hosts = netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    if password:
        netloc = f"{user}:{REDACTED}@{hosts}"
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(key == "password" for key, _ in pairs):
        query = urlencode([(k, REDACTED if k == "password" else v) for k, v in pairs], safe="*/")
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def with_database(url: str, dbname: str) -> str:
    return make_conninfo(url, dbname=dbname)


def database_name(url: str) -> str:
    return str(conninfo_to_dict(url).get("dbname") or "postgres")


def dagster_storage_url(url: str) -> str:
    """Dagster's own storage: same server, its own database, as an SQLAlchemy URL.

    dagster-postgres picks psycopg 3 for a plain `postgresql://` URL under SQLAlchemy 2.1 and its
    NOTIFY then fails; naming the psycopg2 driver avoids that. Credentials are re-quoted and
    every other connection parameter (sslmode, sslrootcert, …) is kept as a query parameter.
    """
    params = {k: v for k, v in conninfo_to_dict(url).items() if v is not None}
    user = quote(str(params.pop("user", "")), safe="")
    password = quote(str(params.pop("password", "")), safe="")
    host = params.pop("host", "127.0.0.1")
    port = params.pop("port", "5432")
    dbname = quote(str(params.pop("dbname", "postgres")) + "_dagster", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql+psycopg2://{auth}{host}:{port}/{dbname}{query}"


def ensure_dagster_database(url: str) -> str:
    """Create Dagster's database beside `url`'s if missing; its SQLAlchemy URL."""
    ensure_database(with_database(url, database_name(url) + "_dagster"))
    return dagster_storage_url(url)


def ensure_database(url: str) -> bool:
    """Create the database `url` names if it is missing; True if it was created."""
    name = database_name(url)
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:  # another process won the race
            return False
    return True
