"""Silence use cases: ending one early is one transaction with the release of what it held."""

from __future__ import annotations

import psycopg
from psycopg_pool import AsyncConnectionPool

from webhook_service.errors import NotFound, SentinelOpsError
from webhook_service.silences import repository
from webhook_service.silences.schemas import NewSilence


class AlreadyExpired(SentinelOpsError):
    status_code = 409


class InvalidSilence(SentinelOpsError):
    status_code = 422


async def create(pool: AsyncConnectionPool, new: NewSilence, actor: str) -> dict:
    try:
        async with pool.connection() as conn:
            return await repository.insert(
                conn,
                rule=new.rule,
                scope=new.scope,
                starts_at=new.starts_at,
                ends_at=new.ends_at,
                reason=new.reason,
                actor=actor,
            )
    except psycopg.errors.CheckViolation as exc:
        # NewSilence checked the window by this process's clock; the start defaults to the
        # database's now(), which can pass an ends_at only just ahead. A 422, not a 500.
        raise InvalidSilence("ends_at must be after starts_at (now)") from exc


async def listing(pool: AsyncConnectionPool, limit: int) -> list[dict]:
    async with pool.connection() as conn:
        return await repository.list_silences(conn, limit)


async def end(pool: AsyncConnectionPool, silence_id: int, actor: str) -> tuple[dict, list[int]]:
    """End a silence now: the silence as it is then and the anomalies whose held Slack rows
    were made due (the caller nudges them after answering). NotFound, or AlreadyExpired (409).

    One transaction, so the outbox never sees the silence over while its rows still wait (they
    would wait until their old next_attempt_at), nor rows released by an end rolled back."""
    async with pool.connection() as conn:
        async with conn.transaction():
            # The row lock makes two concurrent ends queue: the second sees it expired (409).
            row = await repository.lock(conn, silence_id)
            if row is None:
                raise NotFound(f"silence {silence_id} does not exist")
            if row["state"] == "expired":
                raise AlreadyExpired(f"silence {silence_id} has already ended")
            ended = await repository.end(conn, silence_id, actor)
            released = await repository.release(conn, silence_id)
    return ended, released
