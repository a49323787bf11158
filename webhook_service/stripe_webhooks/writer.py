"""Group commit for webhook events: requests that arrive while a write is in flight share the next.

Under light load every event is written on its own, at once. Under heavy load the events that
queue up behind the writes in flight go out together in one statement, so the database
and psycopg pay one round trip for many events. Each request still gets its 2xx only after the
statement holding its event has committed (the pool's connections are in autocommit mode).
Each request also keeps its own deadline, the pool's timeout from its arrival: events queued
behind failing writes get their 503 in time, not one pool timeout per write ahead of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from webhook_service.errors import DatabaseUnavailable
from webhook_service.stripe_webhooks.repository import store_events
from webhook_service.stripe_webhooks.verify import VerifiedEvent

log = logging.getLogger(__name__)

Pending = tuple[VerifiedEvent, "asyncio.Future[bool]", float]  # the event, its answer, deadline
# A write that got its connection has this long past the request's deadline to finish: with the
# pool's 3 s wait, a sender hears within ~4.5 s even from a server that stopped answering.
EXECUTE_GRACE = 1.5


class EventWriter:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        max_inflight: int,
        max_batch: int = 100,  # events per statement, and their bodies' bytes: a bounded
        max_batch_bytes: int = 4 * 1024 * 1024,  # statement, whatever the queue holds
    ) -> None:
        self._pool = pool
        self._timeout = pool.timeout
        self._max_inflight = max(1, max_inflight)
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._queue: list[Pending] = []
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def store(self, event: VerifiedEvent) -> bool:
        """True if the event is new, False for a redelivery; DatabaseUnavailable if not stored."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._queue.append((event, future, loop.time() + self._timeout))
        if self._inflight < self._max_inflight:
            self._inflight += 1
            # Started on the next loop iteration: events that arrive in this one join its batch.
            task = asyncio.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                await self._write(self._take())
        finally:
            self._inflight -= 1

    def _take(self) -> list[Pending]:
        """The oldest queued events, up to the batch's count and size (at least one)."""
        size = count = 0
        for event, _, _ in self._queue[: self._max_batch]:
            size += len(event.payload)
            if count and size > self._max_batch_bytes:
                break
            count += 1
        batch = self._queue[:count]
        del self._queue[:count]
        return batch

    async def _write(self, batch: list[Pending]) -> None:
        try:
            deadline = min(deadline for _, _, deadline in batch)
            inserted = await self._insert([event for event, _, _ in batch], deadline)
        except psycopg.OperationalError:
            _settle(batch, failure=_unavailable)
        except psycopg.Error as exc:
            if len(batch) == 1:
                # Not a lost connection, but the event is not stored all the same (a read-only
                # server after a failover, a full disk): 503, so Stripe retries it, not a 500.
                log.error("webhook %s not stored: %s (%s)", batch[0][0].id,
                          type(exc).__name__, exc.sqlstate)  # fmt: skip
                _settle(batch, failure=_unavailable)
                return
            # One event the database refuses must not fail the others: write each alone.
            for pending in batch:
                await self._write([pending])
        except BaseException:  # cancelled (shutdown) or a bug: no request may wait forever
            for _, future, _ in batch:
                future.cancel()
            raise
        else:
            _settle(batch, inserted=inserted)

    async def _insert(self, events: Sequence[VerifiedEvent], deadline: float) -> set[str]:
        """The ids inserted as new; one retry on a broken connection (a restarted database leaves
        dead connections in the pool), safe because the statement is idempotent."""
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            if (wait := deadline - loop.time()) <= 0:
                log.warning("%d webhook(s) not stored: out of time", len(events))
                break
            try:
                async with asyncio.timeout_at(deadline + EXECUTE_GRACE):
                    async with self._pool.connection(timeout=wait) as conn:
                        return await store_events(conn, events)
            except (PoolTimeout, TimeoutError):
                log.warning("%d webhook(s) not stored: no database answer in time", len(events))
                break
            except psycopg.OperationalError as exc:
                log.warning(
                    "%d webhook(s) not stored (attempt %d): %s",
                    len(events),
                    attempt,
                    type(exc).__name__,
                )
        raise psycopg.OperationalError("the database is unavailable")


def _unavailable() -> DatabaseUnavailable:
    return DatabaseUnavailable(
        "the event was not stored; retry later", headers={"Retry-After": "5"}
    )


def _settle(
    batch: list[Pending],
    inserted: set[str] | None = None,
    failure: Callable[[], BaseException] | None = None,
) -> None:
    """Answer every waiting request; of several deliveries of one id, only the first is new."""
    for event, future, _ in batch:
        if future.done():  # the request went away meanwhile (its client disconnected)
            continue
        if failure is not None:
            future.set_exception(failure())
        else:
            assert inserted is not None
            future.set_result(event.id in inserted)
            inserted.discard(event.id)
