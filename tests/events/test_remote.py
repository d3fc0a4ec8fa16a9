"""The embedded store's cross-process owner lock, taken from several threads of one process at once."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from adstack.events.remote import OwnerLock


def test_threads_of_the_owning_process_all_hold_the_lock(tmp_path: Path) -> None:
    """A report request and the loader both open the store on first use: neither may see "another process"."""
    refused = 0
    for round_ in range(200):
        lock = OwnerLock(tmp_path / f"owner-{round_}")
        start = threading.Barrier(8)
        answers: list[bool] = []

        def take(lock: OwnerLock = lock, start: threading.Barrier = start, answers: list[bool] = answers) -> None:
            start.wait()
            answers.append(lock.try_acquire())

        threads = [threading.Thread(target=take) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        refused += answers.count(False)
        lock.release()
    assert refused == 0


def test_another_process_is_refused_until_released(tmp_path: Path) -> None:
    path = tmp_path / "owner"
    probe = (
        "import sys; from pathlib import Path; from adstack.events.remote import OwnerLock;"
        f" sys.exit(0 if OwnerLock(Path({str(path)!r})).try_acquire() else 3)"
    )
    lock = OwnerLock(path)
    assert lock.try_acquire()
    assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 3
    lock.release()
    assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0
