"""Generated secrets survive a crash mid-write, and processes starting together agree on one."""

from __future__ import annotations

import threading
import time
from itertools import count

import pytest

from sentinelops import local_secrets


def slow_generator():
    """Distinct values, slow enough that concurrent callers overlap while generating."""
    numbers = count()

    def generate() -> str:
        time.sleep(0.05)
        return f"value-{next(numbers)}"

    return generate


class TestReadOrCreate:
    def test_a_missing_file_is_generated_once_then_reused(self, tmp_path):
        path = tmp_path / "api-token"
        first = local_secrets.read_or_create(path, slow_generator())
        assert local_secrets.read_or_create(path, slow_generator()) == first
        assert path.stat().st_mode & 0o777 == 0o600

    def test_an_empty_file_left_by_a_crash_is_replaced(self, tmp_path):
        path = tmp_path / "api-token"
        path.write_text("")  # what the old `touch` then `write_text` left when killed between
        assert local_secrets.read_or_create(path, lambda: "fresh") == "fresh"
        assert path.read_text() == "fresh\n"
        assert path.stat().st_mode & 0o777 == 0o600

    @pytest.mark.parametrize("leftover", ["", None], ids=["empty-file-left", "no-file"])
    def test_concurrent_callers_all_get_the_stored_value(self, tmp_path, leftover):
        path = tmp_path / "webhook-secret"
        if leftover is not None:
            path.write_text(leftover)
        generate = slow_generator()
        start = threading.Barrier(8)
        results: list[str | BaseException] = []

        def call() -> None:
            start.wait()
            try:
                results.append(local_secrets.read_or_create(path, generate))
            except BaseException as exc:  # a failure must show in the assertion, not vanish
                results.append(exc)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results == [local_secrets.read(path)] * 8
        assert [p.name for p in tmp_path.iterdir()] == ["webhook-secret"]  # no temp file left
