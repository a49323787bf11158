"""The plumbing of benchmarks/ingest.py: signed events, the two ways to send them (HTTP, direct
INSERT), a scratch database, the API as a subprocess, and CPU accounting.

Everything here listens on or connects to 127.0.0.1 only, and stops what it started.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import stripe
from psycopg import sql
from psycopg.conninfo import make_conninfo

from sentinelops import embedded
from sentinelops.db import migrate
from sentinelops.postgres import with_database
from webhook_service.stripe_webhooks.repository import store_events
from webhook_service.stripe_webhooks.verify import VerifiedEvent, verify

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
SCRATCH_DB = "sentinelops_bench"
TICKS = os.sysconf("SC_CLK_TCK")
SECRET = "whsec_benchmark_only_0123456789"
WEBHOOK = "/api/v1/webhooks/stripe"
FIXTURES = ROOT / "tests" / "fixtures" / "stripe"
NOT_EVENTS = {"manifest.json", "placeholders.json"}
EVENT_FILES = [p for p in sorted(FIXTURES.glob("*.json")) if p.name not in NOT_EVENTS]
TEMPLATES = [json.loads(p.read_bytes()) for p in EVENT_FILES]
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)
_ids = itertools.count()


@dataclass(frozen=True)
class Event:
    verified: VerifiedEvent | None  # what the handler stores (None where only HTTP is sent)
    request: bytes  # the whole signed HTTP request


def make_events(count: int) -> list[Event]:
    """`count` new events, signed now (the API accepts signatures up to 300 s old)."""
    now, events = int(time.time()), []
    for template in itertools.islice(itertools.cycle(TEMPLATES), count):
        event = {**template, "id": f"evt_bench_{next(_ids)}"}
        text = json.dumps(event)
        signature = stripe.WebhookSignature.generate_signature_header(text, SECRET, timestamp=now)
        verified = verify(text.encode(), signature, [SECRET], tolerance=300)
        head = f"POST {WEBHOOK} HTTP/1.1\r\nHost: {HOST}\r\nStripe-Signature: {signature}"
        head += f"\r\nContent-Type: application/json\r\nContent-Length: {len(text)}\r\n\r\n"
        events.append(Event(verified, (head + text).encode()))
    return events


Send = Callable[[Event], Awaitable[bool]]


def table(rows: list[list[str]]) -> None:
    """Print rows as a right-aligned table, the first row its header, then a blank line."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rows.insert(1, ["-" * w for w in widths])
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    print()


@asynccontextmanager
async def http_sender(port: int, connections: int) -> AsyncIterator[Send]:
    """Keep-alive HTTP/1.1 on `connections` sockets, writing pre-built requests (more queue).

    httpx.AsyncClient cost ~2.8 ms of CPU per request on this 2-core machine (the API ~5.5 ms) and
    fell behind in the rate mode once requests queued; this costs ~0.3 ms.
    """
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await asyncio.open_connection(HOST, port))

    async def send(event: Event) -> bool:
        reader, writer = await idle.get()
        try:
            async with asyncio.timeout(30):
                writer.write(event.request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not (length := CONTENT_LENGTH.search(head)):
                    raise ValueError("a response without Content-Length")
                await reader.readexactly(int(length.group(1)))
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            writer.close()  # a fresh connection takes its place
            idle.put_nowait(await asyncio.open_connection(HOST, port))
            return False
        idle.put_nowait((reader, writer))
        return head.startswith(b"HTTP/1.1 2")

    try:
        yield send
    finally:
        while not idle.empty():
            idle.get_nowait()[1].close()


@asynccontextmanager
async def direct_sender(url: str, connections: int) -> AsyncIterator[Send]:
    """The handler's statement, one event each, with no HTTP in between: the ceiling the API can
    approach (its group commit writes several events per statement under load)."""
    connect = psycopg.AsyncConnection.connect
    conns = await asyncio.gather(*(connect(url, autocommit=True) for _ in range(connections)))
    idle: asyncio.Queue[psycopg.AsyncConnection] = asyncio.Queue()
    for conn in conns:
        idle.put_nowait(conn)

    async def send(event: Event) -> bool:
        conn = await idle.get()
        try:
            assert event.verified is not None
            await store_events(conn, [event.verified])
            return True
        except psycopg.Error:
            return False
        finally:
            idle.put_nowait(conn)

    try:
        yield send
    finally:
        for conn in conns:
            await conn.close()


@contextmanager
def database_server(url: str | None) -> Iterator[str]:
    """`url`, else the project's embedded server (stopped afterwards only if started here)."""
    if url:
        yield url
        return
    home = Path(os.environ.get("SENTINELOPS_HOME", ".sentinelops")).absolute()
    server, owns = embedded.start(home, owner_pid=os.getpid())
    print(f"embedded PostgreSQL on port {server.port} ({'started' if owns else 'reused'})")
    try:
        yield server.url()
    finally:
        if owns:
            embedded.stop(home)


@contextmanager
def scratch_database(
    server_url: str,
    name: str = SCRATCH_DB,
    statement_timeout_ms: int | None = None,
    also_drop: tuple[str, ...] = (),
) -> Iterator[str]:
    """A freshly migrated database `name` on that server, dropped afterwards (with `also_drop`,
    databases a run may have made beside it); with a statement timeout on its URL, no runaway
    query outlives the benchmark."""
    admin = with_database(server_url, "postgres")

    def drop_and(create: bool) -> None:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        with psycopg.connect(admin, autocommit=True) as conn:
            for each in (name, *also_drop):
                conn.execute(drop.format(sql.Identifier(each)))
            if create:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    drop_and(create=True)
    url = with_database(server_url, name)
    migrate(url)
    try:
        if statement_timeout_ms is None:
            yield url
        else:
            yield make_conninfo(url, options=f"-c statement_timeout={statement_timeout_ms}")
    finally:
        drop_and(create=False)


def reset_events(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE stripe_events, webhook_rejections CASCADE")  # scratch data only


def stored_events(url: str) -> tuple[int, int]:
    """(rows in stripe_events, rows delivered more than once)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE deliveries > 1) FROM stripe_events"
        ).fetchone()
    return (row[0], row[1]) if row else (0, 0)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@contextmanager
def api_server(db_url: str, secret: str, workers: int, pool: int) -> Iterator[tuple[int, int]]:
    """`sentinelops api` on a free loopback port; yields (port, pid)."""
    port = _free_port()
    env = dict(os.environ, DATABASE_URL=db_url, STRIPE_WEBHOOK_SECRET=secret, LOG_LEVEL="WARNING")
    env["SENTINELOPS_DB_POOL_SIZE"] = str(pool)
    cmd = [sys.executable, "-m", "sentinelops.cli", "api", "--host", HOST, "--port", str(port)]
    cmd += ["--workers", str(workers)]
    log = Path(tempfile.gettempdir()) / f"sentinelops-bench-{os.getpid()}-w{workers}-p{pool}.log"
    with open(log, "wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://{HOST}:{port}"
    try:
        _wait_ready(proc, base, log)
        yield port, proc.pid
    finally:
        _stop(proc)
    log.unlink(missing_ok=True)


def _wait_ready(proc: subprocess.Popen, base: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    _stop(proc)
    raise RuntimeError(f"the API did not become ready; its log:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (uvicorn stops its workers), then SIGKILL to the group this Popen created."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def postmaster_pid(url: str) -> int | None:
    """The server's postmaster (parent of our backend), if it runs on this machine."""
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
        return _stat(row[0])[1] if row else None
    except (OSError, psycopg.Error):
        return None


def _stat(pid: int) -> list[int]:
    """(state, ppid, …) fields of /proc/<pid>/stat after the command name; state as 0."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return [0] + [int(field) for field in text[text.rfind(")") + 4 :].split()]


def tree_cpu(pid: int | None) -> float | None:
    """CPU seconds used by `pid` and every descendant (live, or exited and reaped)."""
    if pid is None:
        return None
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        try:
            fields = _stat(current)
            total += sum(fields[11:15]) / TICKS  # utime, stime, cutime, cstime
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue  # exited while we looked
    return total


def machine_busy() -> float:
    """CPU seconds this machine's CPUs have been busy (any process), from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TICKS  # all but idle and iowait


def cpu_split(before: list[float | None], after: list[float | None], seconds: float) -> str:
    """CPU used between two [load generator, API, PostgreSQL, machine busy] snapshots, as
    'gen/api/db/other' in % of one core; `other` is busy time none of the three used (noise)."""
    used = [None if b is None or a is None else a - b for b, a in zip(before, after, strict=True)]
    *ours, busy = used
    other = (busy or 0.0) - sum(u or 0.0 for u in ours)
    shares = ["-" if u is None else f"{max(0.0, 100 * u / seconds):.0f}" for u in [*ours, other]]
    return "/".join(shares)
