"""The generated secret key: one per data dir, the same for every process that starts beside another."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from adstack.core.settings import Settings

PROCESSES = 6


def _resolve(data_dir: str, start: object, keys: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    keys.put(Settings(data_dir=Path(data_dir), secret_key="").resolved_secret_key)  # type: ignore[attr-defined]


def test_processes_starting_together_all_read_the_one_complete_key(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for attempt in range(15):
        data_dir = tmp_path / str(attempt)
        start, keys = context.Barrier(PROCESSES), context.Queue()
        workers = [context.Process(target=_resolve, args=(str(data_dir), start, keys)) for _ in range(PROCESSES)]
        for worker in workers:
            worker.start()
        seen = {keys.get(timeout=30) for _ in workers}
        for worker in workers:
            worker.join(timeout=30)
        assert len(seen) == 1 and len(seen.pop()) >= 48, f"attempt {attempt}: the processes read different keys"
        assert [p.name for p in data_dir.iterdir()] == ["secret.key"]  # no draft left behind
        assert (data_dir / "secret.key").stat().st_mode & 0o077 == 0
