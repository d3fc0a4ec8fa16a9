"""The write-ahead journal: events are durable on disk before append() returns, and loaded later.

Layout under the journal directory:
- `<created_ns>-<pid>.jsonl` segments, one JSON object per line. Each process appends to its own
  segment and holds an exclusive flock on it while it is active, so a loader can tell live segments from
  those of finished or crashed writers. A line without its newline is a torn write that was never
  acknowledged; readers stop before it, and the writer moves to a fresh segment after any failed write.
- `checkpoint.json`: how many bytes of each segment have been loaded into the engine.
- `inflight.json`: the batch being inserted right now (its byte ranges, its deduplication token and the
  ids it left out), written before the insert, so a crashed insert is retried identically after restart.
- `loader.lock`: one loader at a time per directory, across processes.

Appends group-commit: concurrent appenders share one fsync.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

SEGMENT_SUFFIX = ".jsonl"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@dataclass
class Batch:
    """Complete lines read from the journal, and the byte ranges they came from."""

    lines: list[bytes] = field(default_factory=list)
    start: dict[str, int] = field(default_factory=dict)
    end: dict[str, int] = field(default_factory=dict)


@dataclass
class InFlight:
    token: str
    start: dict[str, int]
    end: dict[str, int]
    skipped_ids: list[str]

    def dump(self) -> bytes:
        return orjson.dumps({"token": self.token, "start": self.start, "end": self.end,
                             "skipped_ids": self.skipped_ids})

    @classmethod
    def load(cls, data: bytes) -> InFlight:
        body = orjson.loads(data)
        return cls(body["token"], body["start"], body["end"], body["skipped_ids"])


class Journal:
    def __init__(self, directory: Path, *, segment_bytes: int = 64 * 1024 * 1024):
        self.directory = directory
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._fd: int | None = None
        self._segment: str | None = None
        self._written = 0  # bytes written to the active segment
        self._synced = 0  # bytes of the active segment known to be on disk
        self._loader_fd: int | None = None

    # ---------- writing ----------

    def _open_segment(self) -> None:
        name = f"{time.time_ns():020d}-{os.getpid()}{SEGMENT_SUFFIX}"
        fd = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        _fsync_dir(self.directory)
        self._fd, self._segment, self._written, self._synced = fd, name, 0, 0

    def _close_segment(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
        self._fd, self._segment = None, None

    def append(self, data: bytes) -> None:
        """Write complete lines and return once they are on disk."""
        if not data:
            return
        with self._write_lock:
            if self._fd is None or self._written >= self.segment_bytes:
                with self._sync_lock:
                    self._close_segment()
                    self._open_segment()
            fd, segment = self._fd, self._segment
            assert fd is not None
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(f"short write to the event journal: {written} of {len(data)} bytes")
            except OSError:
                # Whatever part was written is a torn tail; never append after it.
                with self._sync_lock:
                    self._close_segment()
                raise
            self._written += written
            target = self._written
        with self._sync_lock:
            if self._segment != segment:
                return  # rotated meanwhile: closing the old segment fsynced it
            if self._synced >= target:
                return  # another appender's fsync covered these bytes
            covered = self._written
            os.fsync(fd)
            self._synced = max(self._synced, covered)

    def close(self) -> None:
        with self._write_lock, self._sync_lock:
            self._close_segment()
        if self._loader_fd is not None:
            os.close(self._loader_fd)
            self._loader_fd = None

    # ---------- loading ----------

    @contextlib.contextmanager
    def loader_lock(self) -> Iterator[None]:
        """One loader per journal directory across processes (threads serialise above this)."""
        if self._loader_fd is None:
            self._loader_fd = os.open(self.directory / "loader.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._loader_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._loader_fd, fcntl.LOCK_UN)

    def segments(self) -> list[str]:
        return sorted(p.name for p in self.directory.glob(f"*{SEGMENT_SUFFIX}"))

    def checkpoint(self) -> dict[str, int]:
        path = self.directory / "checkpoint.json"
        if not path.exists():
            return {}
        loaded: dict[str, int] = orjson.loads(path.read_bytes())["segments"]
        return loaded

    def pending_bytes(self) -> int:
        done = self.checkpoint()
        total = 0
        for name in self.segments():
            with contextlib.suppress(FileNotFoundError):
                total += max(0, (self.directory / name).stat().st_size - done.get(name, 0))
        return total

    def read_batch(self, max_lines: int) -> Batch:
        """The next complete lines after the checkpoint, oldest segment first."""
        done = self.checkpoint()
        batch = Batch()
        for name in self.segments():
            if len(batch.lines) >= max_lines:
                break
            offset = done.get(name, 0)
            lines, end = self._read_lines(name, offset, max_lines - len(batch.lines))
            if end > offset:
                batch.start[name] = offset
                batch.end[name] = end
                batch.lines.extend(lines)
        return batch

    def read_ranges(self, start: dict[str, int], end: dict[str, int]) -> list[bytes]:
        """The lines of exactly these byte ranges, to redo an interrupted insert."""
        lines: list[bytes] = []
        for name in sorted(end):
            with open(self.directory / name, "rb") as handle:
                handle.seek(start.get(name, 0))
                chunk = handle.read(end[name] - start.get(name, 0))
            lines.extend(chunk.splitlines())
        return lines

    def _read_lines(self, name: str, offset: int, max_lines: int) -> tuple[list[bytes], int]:
        lines: list[bytes] = []
        position = offset
        try:
            handle = open(self.directory / name, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return lines, offset
        with handle:
            handle.seek(offset)
            for line in handle:
                if not line.endswith(b"\n"):
                    break  # torn or still being written
                position += len(line)
                if line.strip():
                    lines.append(line.rstrip(b"\n"))
                if len(lines) >= max_lines:
                    break
        return lines, position

    def commit(self, end: dict[str, int]) -> None:
        """Record the ranges as loaded and delete segments nobody writes to any more."""
        done = self.checkpoint()
        done.update(end)
        for name in list(done):
            path = self.directory / name
            if not path.exists():
                del done[name]
            elif done[name] >= path.stat().st_size and name != self._segment and not self._in_use(path):
                path.unlink()
                del done[name]
        write_atomically(self.directory / "checkpoint.json", orjson.dumps({"segments": done}))

    @staticmethod
    def _in_use(path: Path) -> bool:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def inflight(self) -> InFlight | None:
        path = self.directory / "inflight.json"
        return InFlight.load(path.read_bytes()) if path.exists() else None

    def begin(self, inflight: InFlight) -> None:
        write_atomically(self.directory / "inflight.json", inflight.dump())

    def finish(self, inflight: InFlight) -> None:
        self.commit(inflight.end)
        with contextlib.suppress(FileNotFoundError):
            (self.directory / "inflight.json").unlink()


def encode_lines(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)
