"""`settle`: a bench run starts only once the server's processes, their children included, are idle."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from adstack.bench import settle

BURN = """
import pathlib, sys, time
pathlib.Path(sys.argv[1]).touch()
end = time.monotonic() + 1.5
while time.monotonic() < end:
    pass
pathlib.Path(sys.argv[2]).touch()
time.sleep(60)
"""


def test_settle_waits_for_a_busy_child_process_to_go_idle(tmp_path: Path) -> None:
    started, finished = tmp_path / "started", tmp_path / "finished"
    # The watched process idles; the work is done by its child, as a server's workers are its children.
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c', *sys.argv[1:]])",
         BURN, str(started), str(finished)]
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert started.exists(), "the busy child never started"
        settle([parent.pid])
        assert finished.exists(), "settle returned while the child was still busy"
    finally:
        parent.kill()
        subprocess.run(["pkill", "-f", str(finished)], check=False)
