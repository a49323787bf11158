"""Opaque keyset cursors: a page never skips or repeats a row, however rows are added."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from webhook_service.errors import InvalidCursor


def encode_cursor(*key: object) -> str:
    values = [v.isoformat() if isinstance(v, datetime) else v for v in key]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kinds: tuple[type, ...]) -> tuple:
    """The key a cursor carries, typed as `kinds` says; InvalidCursor (422) if it is not ours."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != len(kinds):
            raise ValueError
        return tuple(
            datetime.fromisoformat(v) if kind is datetime else kind(v)
            for v, kind in zip(raw, kinds, strict=True)
        )
    except (ValueError, TypeError, OverflowError):
        raise InvalidCursor("cursor is not one this API issued") from None
