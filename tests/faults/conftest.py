"""A private embedded PostgreSQL per test, so a fault test can stop and start its server
whichever server (DATABASE_URL or the shared embedded one) the rest of the suite uses."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sentinelops import embedded
from sentinelops.db import migrate


@dataclass(frozen=True)
class PrivateServer:
    home: Path
    url: str
    port: int


@pytest.fixture
def private_server() -> Iterator[PrivateServer]:
    # Outside pytest's 0700 temp root: as root the server runs as its own user (see test_up).
    home = Path(tempfile.mkdtemp(prefix="sentinelops-fault-"))
    try:
        server, _ = embedded.start(home, owner_pid=os.getpid())
        url = server.url()
        migrate(url)
        yield PrivateServer(home, url, server.port)
    finally:
        embedded.stop(home)
        shutil.rmtree(home, ignore_errors=True)
