"""EventWriter, the webhook's group commit: batched writes must answer each request as if alone."""

from __future__ import annotations

import asyncio
import json

import pytest
from psycopg_pool import AsyncConnectionPool

from tests.support import EVENT_FIXTURES, fixture_event
from webhook_service.errors import DatabaseUnavailable
from webhook_service.stripe_webhooks.verify import VerifiedEvent
from webhook_service.stripe_webhooks.writer import EventWriter


def verified(event: dict, payload: str | None = None) -> VerifiedEvent:
    return VerifiedEvent(id=event["id"], payload=json.dumps(event) if payload is None else payload)


def store_all(
    database_url: str, events: list[VerifiedEvent], max_batch: int = 100
) -> list[bool | BaseException]:
    """Every event offered at once, to a writer allowed one write in flight: each request queues
    its event before the write starts (on the next turn of the event loop), so the whole queue,
    up to `max_batch` events a statement, goes out in as few statements as it can."""

    async def go() -> list[bool | BaseException]:
        kwargs = {"autocommit": True}
        async with AsyncConnectionPool(database_url, min_size=1, max_size=2, kwargs=kwargs) as pool:
            writer = EventWriter(pool, max_inflight=1, max_batch=max_batch)
            return await asyncio.gather(*map(writer.store, events), return_exceptions=True)

    return asyncio.run(go())


def statements_that_stored(db) -> int:
    """How many INSERT statements wrote the stored events: rows one statement inserted share its
    transaction (ingest_xid, migration 0005) and, within it, its command id (cmin)."""
    query = "SELECT count(DISTINCT (ingest_xid, cmin::text)) FROM stripe_events"
    return db.execute(query).fetchone()[0]


@pytest.mark.parametrize(
    ("max_batch", "statements"),
    [
        pytest.param(100, 1, id="the whole queue in one statement"),
        pytest.param(4, 3, id="a statement holds at most max_batch events"),
    ],
)
def test_queued_deliveries_are_stored_by_one_statement_not_one_each(
    database_url, db, max_batch, statements
):
    events = [verified(fixture_event(name)) for name in EVENT_FIXTURES[:10]]

    assert store_all(database_url, events, max_batch=max_batch) == [True] * 10

    assert statements_that_stored(db) == statements


def test_queued_deliveries_share_a_write_and_each_gets_its_own_answer(database_url, db):
    fixtures = [fixture_event(name) for name in EVENT_FIXTURES[:6]]
    events = [verified(event) for event in fixtures]
    earlier = fixtures[5]
    db.execute(  # one of them was delivered before
        "INSERT INTO stripe_events (id, type, created, livemode, payload)"
        " VALUES (%(id)s, %(type)s, to_timestamp(%(created)s), %(livemode)s, %(payload)s)",
        {**earlier, "payload": events[5].payload},
    )
    db.commit()
    # The first four twice (a retry racing the original), all in the same batch.
    offered = [*events, *events[:4]]

    answers = store_all(database_url, offered)

    # Exactly one "stored" per new event; the repeats and the earlier one are duplicates.
    assert answers == [True] * 5 + [False] + [False] * 4
    rows = db.execute("SELECT id, deliveries FROM stripe_events ORDER BY id").fetchall()
    assert rows == sorted([(e.id, 2) for e in events[:4]] + [(events[4].id, 1), (events[5].id, 2)])


def test_an_event_the_database_refuses_fails_alone(database_url, db):
    good = [verified(fixture_event(name)) for name in EVENT_FIXTURES[:3]]
    # JSON Python accepts but jsonb refuses (a lone surrogate): it must not take the batch down.
    refused = verified({**fixture_event(EVENT_FIXTURES[3]), "id": "evt_x"}, '{"a": "\\ud800"}')

    answers = store_all(database_url, [good[0], good[1], refused, good[2]])

    assert answers[:2] == [True, True] and answers[3] is True
    assert isinstance(answers[2], DatabaseUnavailable)  # a 503: Stripe retries it
    stored = {r[0] for r in db.execute("SELECT id FROM stripe_events")}
    assert stored == {e.id for e in good}


def test_events_larger_than_the_batch_size_cap_are_still_stored(database_url, db):
    events = [verified(fixture_event(name)) for name in EVENT_FIXTURES]
    max_batch_bytes = 1  # every event is over it: each goes out in a batch of its own

    async def go() -> list[bool]:
        async with AsyncConnectionPool(database_url, kwargs={"autocommit": True}) as pool:
            writer = EventWriter(pool, max_inflight=1, max_batch_bytes=max_batch_bytes)
            return await asyncio.gather(*map(writer.store, events))

    assert asyncio.run(go()) == [True] * len(events)
    assert db.execute("SELECT count(*) FROM stripe_events").fetchone() == (len(events),)


def test_the_envelope_columns_are_read_from_the_event_body(database_url, db):
    connect = {**fixture_event(EVENT_FIXTURES[0]), "id": "evt_connect", "account": "acct_1Abc"}
    odd = {**fixture_event(EVENT_FIXTURES[1]), "id": "evt_odd", "api_version": 7, "account": None}

    assert store_all(database_url, [verified(connect), verified(odd)]) == [True, True]

    rows = db.execute(
        "SELECT id, type, extract(epoch FROM created)::bigint, livemode, api_version, account"
        " FROM stripe_events ORDER BY id"
    ).fetchall()
    assert rows == [
        ("evt_connect", connect["type"], connect["created"], connect["livemode"],
         connect["api_version"], "acct_1Abc"),
        ("evt_odd", odd["type"], odd["created"], odd["livemode"], None, None),  # not strings
    ]  # fmt: skip
