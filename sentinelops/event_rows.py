"""A Stripe event as a `stripe_events` row: the one mapping, for the webhook and reconciliation.

An event arrives two ways, verified by the webhook or listed by Stripe's Events API, and both
must land as the same row. The statement ends before its ON CONFLICT clause: what a second
arrival of an id means is the caller's (a webhook redelivery is counted, a listing changes
nothing), so each repository appends its own.
"""

from __future__ import annotations

from collections.abc import Iterable

# The batch travels as one JSON parameter, [{"d": deliveries, "e": event}, ...], and the text
# never changes, so PostgreSQL parses and prepares it once, and psycopg adapts one string per
# batch instead of 8 values per event (its per-parameter work was the largest cost of a multi-row
# VALUES form, benchmarks/ingest.py). The envelope may hold anything a verified body can: an
# api_version or account that is not a string is stored as NULL, never as the text of an object.
INSERT_EVENTS = """
INSERT INTO stripe_events
       (id, type, created, livemode, api_version, account, payload, deliveries, source)
SELECT b.e->>'id', b.e->>'type', to_timestamp((b.e->>'created')::bigint),
       (b.e->>'livemode')::boolean,
       CASE WHEN jsonb_typeof(b.e->'api_version') = 'string' THEN b.e->>'api_version' END,
       CASE WHEN jsonb_typeof(b.e->'account') = 'string' THEN b.e->>'account' END,
       b.e, b.d, %(source)s
  FROM jsonb_to_recordset(%(events)s::jsonb) AS b(d integer, e jsonb)
"""


def events_param(batch: Iterable[tuple[int, str]]) -> str:
    """INSERT_EVENTS' `events` from (deliveries, event as JSON text) pairs: the texts are spliced
    as they are, not parsed and dumped again."""
    return "[" + ",".join(f'{{"d":{deliveries},"e":{event}}}' for deliveries, event in batch) + "]"
