"""What unauthenticated uploads cost the API process: peak memory and time to the answer.

Starts the API (the code in the current directory) as its own process on DATABASE_URL, sends
CONCURRENT unauthenticated PATCH requests whose chunked bodies are MB megabytes each, and prints
the process's peak resident memory before and after, and how long the senders waited.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        uv run python benchmarks/api_limits.py [--concurrent 8] [--mb 64]
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CHUNK = b"x" * 65536


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def upload(port: int, megabytes: int) -> tuple[str, float]:
    """One chunked PATCH without a token; the status line and the seconds until it came."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(
            b"PATCH /api/v1/anomalies/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        sent = 0
        try:
            while sent < megabytes * 1024 * 1024:
                if select.select([sock], [], [], 0)[0]:  # answered before the body ended
                    break
                sock.sendall(b"10000\r\n" + CHUNK + b"\r\n")
                sent += len(CHUNK)
            else:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = sock.recv(4096)
    return answer.split(b"\r\n")[0].decode(), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrent", type=int, default=8)
    parser.add_argument("--mb", type=int, default=64)
    args = parser.parse_args()
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.getcwd(),
        "STRIPE_WEBHOOK_SECRET": "whsec_bench_0123456789",
        "SENTINELOPS_API_TOKEN": "so_bench_0123456789",
    }
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "webhook_service.main:create_app", "--factory",
         "--port", str(port), "--log-level", "warning"],
        env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        before = peak_rss_mb(api.pid)
        with ThreadPoolExecutor(args.concurrent) as pool:
            answers = list(pool.map(lambda _: upload(port, args.mb), range(args.concurrent)))
        after = peak_rss_mb(api.pid)
    finally:
        api.terminate()
        api.wait(timeout=10)
    statuses = sorted({status for status, _ in answers})
    waits = sorted(seconds for _, seconds in answers)
    print("| uploads | MB each | answers | slowest answer s | peak RSS before MB | after MB |")
    print("| ---: | ---: | --- | ---: | ---: | ---: |")
    print(f"| {args.concurrent} | {args.mb} | {', '.join(statuses)} | {waits[-1]:.2f} "
          f"| {before:.0f} | {after:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
