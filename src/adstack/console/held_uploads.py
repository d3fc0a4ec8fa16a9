"""Files a refused form keeps by reference, so a person corrects the form without choosing them again.

A refused registration holds its documents under an unguessable token for an hour; the form sends the token back
and the next attempt takes the file from here. Files are stored by the token's digest (the token itself is never
written down) and at most max_bytes are kept, the same cap the documents have.

Anyone may post the form, so what is held is bounded: only files that are documents by their content, at most a
few per visitor (client IP) and at most a total for everyone. Past a cap nothing more is held and the form just
asks for the file again. A file's name starts with its visitor's tag, so one scan of the folder (made only when a
file is about to be held, which the registration limiter already bounds) counts both caps and purges what expired.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import UploadFile

from adstack.accounts.service import document_content_type

HOLD_SECONDS = 3600
FOLDER = "held-uploads"
_TAG = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class HeldFile:
    token: str
    filename: str

    def open(self, data_dir: Path) -> io.BytesIO:
        path = _path(data_dir, self.token)
        assert path is not None  # a HeldFile's token is always well formed
        return io.BytesIO(path.read_bytes())


@dataclass(frozen=True)
class HoldLimits:
    """How much is held: per visitor (files, bytes) and for everyone (files, bytes)."""

    visitor_files: int
    visitor_bytes: int
    total_files: int
    total_bytes: int


def visitor_tag(visitor: str) -> str:
    return hashlib.blake2b(visitor.encode(), digest_size=8, person=b"held-uploads").hexdigest()


def _path(data_dir: Path, token: str) -> Path | None:
    """tag.random -> FOLDER/tag-sha256(token); None for a token this module did not make."""
    tag, dot, _ = token.partition(".")
    if not dot or not _TAG.match(tag):
        return None
    return data_dir / FOLDER / f"{tag}-{hashlib.sha256(token.encode()).hexdigest()}"


@dataclass
class _Usage:
    files: int = 0
    bytes: int = 0
    visitor_files: int = 0
    visitor_bytes: int = 0


def _scan(folder: Path, tag: str, now: float) -> _Usage:
    """Purge expired files and count what stays, in all and for `tag`."""
    usage = _Usage()
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                stat = entry.stat()
                if now - stat.st_mtime > HOLD_SECONDS:
                    os.unlink(entry.path)
                    continue
            except FileNotFoundError:
                continue  # another request purged it first
            if entry.name.endswith(".json"):
                continue
            usage.files += 1
            usage.bytes += stat.st_size
            if entry.name.startswith(f"{tag}-"):
                usage.visitor_files += 1
                usage.visitor_bytes += stat.st_size
    return usage


def hold(data_dir: Path, upload: UploadFile, max_bytes: int, *, visitor: str, limits: HoldLimits
         ) -> HeldFile | None:
    """Keep an uploaded file for the form's next attempt; None when it is not a document by its content, is
    larger than any document may be, or a cap (the visitor's or everyone's) would be passed."""
    upload.file.seek(0)
    content = upload.file.read(max_bytes + 1)
    upload.file.seek(0)
    if len(content) > max_bytes or document_content_type(content) is None:
        return None
    folder = data_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    tag = visitor_tag(visitor)
    usage = _scan(folder, tag, time.time())
    if (usage.visitor_files + 1 > limits.visitor_files or usage.visitor_bytes + len(content) > limits.visitor_bytes
            or usage.files + 1 > limits.total_files or usage.bytes + len(content) > limits.total_bytes):
        return None
    token = f"{tag}.{secrets.token_urlsafe(24)}"
    filename = Path(upload.filename or "document").name[:255]
    path = _path(data_dir, token)
    assert path is not None
    path.with_suffix(".json").write_text(json.dumps({"filename": filename}))
    path.write_bytes(content)
    return HeldFile(token, filename)


def release(data_dir: Path, held: HeldFile) -> None:
    """Forget a held file once the form that kept it went through."""
    path = _path(data_dir, held.token)
    if path is not None:
        for each in (path, path.with_suffix(".json")):
            each.unlink(missing_ok=True)


def take(data_dir: Path, token: str) -> HeldFile | None:
    """The file held under `token`, while it is held."""
    if not token or len(token) > 64:
        return None
    path = _path(data_dir, token)
    if path is None:
        return None
    try:
        if time.time() - path.stat().st_mtime > HOLD_SECONDS:
            return None
        meta = json.loads(path.with_suffix(".json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return HeldFile(token, str(meta.get("filename") or "document"))
