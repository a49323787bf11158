"""The plumbing of benchmarks/rules.py: its scratch database and CPU accounting from /proc.

Other engineers run test suites on this machine while it measures, so each phase reports where
the machine's CPU went: this process, the PostgreSQL backends of the scratch database, other
PostgreSQL processes (background writers, other databases) and everything else.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import bench_support
import dagster as dg
import psycopg
from bench_support import TICKS, machine_busy

from sentinelops.postgres import ensure_dagster_database
from sentinelops_pipelines.storage import metrics as metrics_sql

SCRATCH_DB = "sentinelops_bench_rules"
STATEMENT_TIMEOUT_MS = 15 * 60 * 1000  # bounds any single statement, Dagster's included


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A freshly migrated SCRATCH_DB on that server (and Dagster's `<name>_dagster`, if a run
    made it), dropped afterwards; its URL carries a statement timeout."""
    with bench_support.scratch_database(
        server_url, SCRATCH_DB, STATEMENT_TIMEOUT_MS, also_drop=(f"{SCRATCH_DB}_dagster",)
    ) as url:
        yield url


def _cpu(pid: str) -> tuple[int, float] | None:
    """(start time in ticks since boot, CPU seconds) of a process, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return int(fields[19]), (int(fields[11]) + int(fields[12])) / TICKS


def _kind(pid: str, dbname: str) -> str:
    dagster = f"{dbname}_dagster"  # Dagster's storage, with --dagster-storage postgres
    if int(pid) == os.getpid():
        return "bench"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return "other"
    if cmdline.startswith("postgres:") and any(f" {db} " in cmdline for db in (dbname, dagster)):
        return "db"
    if cmdline.startswith("postgres") or "/bin/postgres " in cmdline:
        return "pg"
    return "other"


@dataclass
class CpuShare:
    seconds: float
    by_kind: dict[str, float] = field(default_factory=dict)  # CPU seconds

    def percent(self, kind: str) -> float:
        return 100 * self.by_kind.get(kind, 0.0) / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        kinds = ("bench", "db", "pg", "other")
        return "/".join(f"{self.percent(k):.0f}" for k in kinds)


class CpuSampler:
    """Reads every process's CPU time five times a second, so processes that exit during the
    phase (a Dagster asset's connection) still count up to their last sample. `other` is whatever
    the machine's CPUs did that the three named kinds did not (other engineers' tests)."""

    def __init__(self, dbname: str, interval: float = 0.2) -> None:
        self.dbname, self.interval = dbname, interval
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self.kinds: dict[tuple[str, int], str] = {}
        self._stop = threading.Event()

    def _sample(self) -> None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or (stat := _cpu(pid)) is None:
                continue
            key = (pid, stat[0])
            if key not in self.kinds:
                self.kinds[key] = _kind(pid, self.dbname)
                # Started during the phase: all of its CPU belongs to the phase.
                self.first[key] = 0.0 if stat[0] >= self._boot_ticks else stat[1]
            self.last[key] = stat[1]

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> CpuSampler:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        self._boot_ticks = int(uptime * TICKS)
        self._busy, self._started = machine_busy(), time.perf_counter()
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        busy = machine_busy() - self._busy
        share = CpuShare(time.perf_counter() - self._started)
        for key, kind in self.kinds.items():
            used = self.last[key] - self.first[key]
            share.by_kind[kind] = share.by_kind.get(kind, 0.0) + used
        named = sum(v for k, v in share.by_kind.items() if k != "other")
        share.by_kind["other"] = max(0.0, busy - named)
        self.share = share


@contextmanager
def phase(dbname: str, cpu: dict[str, CpuShare], name: str) -> Iterator[None]:
    """Measure where the CPU went while the block runs; stored as cpu[name]."""
    with CpuSampler(dbname) as sampler:
        yield
    cpu[name] = sampler.share


@contextmanager
def dagster_instance(url: str, storage: str) -> Iterator[dg.DagsterInstance]:
    """An ephemeral (in-memory) instance, or the project's own storage class on
    `<scratch>_dagster` of the same server, as `sentinelops up` configures it."""
    if storage == "ephemeral":
        with dg.DagsterInstance.ephemeral() as instance:
            yield instance
        return
    config = {"postgres_url": ensure_dagster_database(url)}
    custom = {"module": "sentinelops_pipelines.instance", "class": "SentinelOpsDagsterStorage"}
    overrides = {"storage": {"custom": {**custom, "config": config}}}
    overrides["telemetry"] = {"enabled": False}
    with tempfile.TemporaryDirectory() as home, dg.DagsterInstance.local_temp(home, overrides) as i:
        yield i


def explain(url: str, start: datetime, end: datetime, which: list[str]) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of metrics.py's statements over [start, end), rolled back."""
    statements = {"ROLL_UP_METRICS": metrics_sql.ROLL_UP_METRICS,
                  "ROLL_UP_AMOUNTS": metrics_sql.ROLL_UP_AMOUNTS,
                  "WINDOWS": metrics_sql.WINDOWS, "AMOUNTS": metrics_sql.AMOUNTS}  # fmt: skip
    params = {"start": start, "end": end}
    with psycopg.connect(url) as conn:
        for name in which:
            query = statements[name]
            text = query if isinstance(query, str) else query.as_string(conn)
            if name == "ROLL_UP_AMOUNTS":
                conn.execute(metrics_sql.DELETE_AMOUNTS, params)  # as roll_up() does first
            plan = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {text}", params).fetchall()
            span = f"{start:%m-%d %H:%M} .. {end:%m-%d %H:%M}"
            print(f"\n-- EXPLAIN (ANALYZE, BUFFERS) {name} over {span}")
            print("\n".join(row[0] for row in plan))
        conn.rollback()
