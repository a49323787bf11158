"""Opaque keyset cursors: a page never skips or repeats a row, however rows are added."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime

from webhook_service.errors import InvalidCursor
from webhook_service.schemas import assume_utc

CURSOR_LIMIT = 512  # far above any cursor issued; the API's cursor parameter says the same


def encode_cursor(*key: object) -> str:
    values = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kinds: tuple[type, ...]) -> tuple:
    """The key a cursor carries, typed as `kinds` says; InvalidCursor (422) if it is not ours."""
    if len(cursor) > CURSOR_LIMIT:  # longer than any we issue: refused before it is decoded
        raise InvalidCursor("cursor is not one this API issued")
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != len(kinds):
            raise ValueError
        key = tuple(
            assume_utc(datetime.fromisoformat(v)) if kind is datetime else kind(v)
            for v, kind in zip(raw, kinds, strict=True)
        )
        # PostgreSQL text cannot hold NUL: a "\u0000" inside the JSON would fail the query.
        if any(isinstance(v, str) and "\x00" in v for v in key):
            raise ValueError
    # RecursionError: a forged cursor of a few thousand nested brackets.
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise InvalidCursor("cursor is not one this API issued") from None
    return key


def split_page(
    rows: list[dict], limit: int, key: Callable[[dict], tuple]
) -> tuple[list[dict], str | None]:
    """A page from `limit + 1` fetched rows, and the cursor of the next (None on the last)."""
    page = rows[:limit]
    return page, encode_cursor(*key(page[-1])) if len(rows) > limit else None
