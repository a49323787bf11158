"""Secrets generated on first use and kept under SENTINELOPS_HOME, written so a crash never
leaves a half-written file behind.

A plain `write_text` that dies between creating and filling the file leaves it empty, and every
later start then reads an empty secret (the API answered 503 forever). Here the value is written
to a private temporary file, flushed to disk, and renamed into place only when complete: the
path holds either nothing or the whole secret. Two processes starting together agree on one
value: creation is serialised by a lock on the directory, and the second reads the first one's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from sentinelops.settings import Settings


def generate_token(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def read(path: Path) -> str | None:
    """The secret stored at `path`, or None when the file is missing or empty."""
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        return None
    return value or None


def write(path: Path, value: str) -> None:
    """Replace `path` with `value` (mode 0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _write_temp(path, value)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _sync_dir(path.parent)


def read_or_create(path: Path, generate: Callable[[], str]) -> str:
    """The secret at `path`; generated and stored first if the file is missing or empty."""
    existing = read(path)
    if existing is not None:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    # Only under a lock: an empty file (a crash's leftover) must be replaced, and without one two
    # processes could both see it empty and each store, and return, its own value.
    with _locked(path.parent):
        existing = read(path)
        if existing is not None:  # another process stored it while we waited
            return existing
        value = generate()
        write(path, value)
    return value


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_temp(path: Path, value: str) -> Path:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (value + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return Path(name)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def session_key(settings: Settings) -> bytes:
    """The server's own key: SENTINELOPS_SESSION_KEY, else generated under SENTINELOPS_HOME.

    Keys the tags that name unnamed API tokens in anomaly history; console sessions sign with it
    too. Every API process of one deployment must see the same key (set it, or share the home).
    """
    if settings.session_key is not None:
        return settings.session_key.get_secret_value().encode()
    path = settings.sentinelops_home / "session-key"
    return read_or_create(path, generate_token).encode()
