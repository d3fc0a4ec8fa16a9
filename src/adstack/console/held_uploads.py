"""Files a refused form keeps by reference, so a person corrects the form without choosing them again.

A refused registration holds its documents under an unguessable token for an hour; the form sends the token back
and the next attempt takes the file from here. Files are stored by the token's digest (the token itself is never
written down) and at most max_bytes are kept, the same cap the documents have.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import UploadFile

HOLD_SECONDS = 3600
FOLDER = "held-uploads"


@dataclass(frozen=True)
class HeldFile:
    token: str
    filename: str

    def open(self, data_dir: Path) -> io.BytesIO:
        return io.BytesIO(_path(data_dir, self.token).read_bytes())


def _path(data_dir: Path, token: str) -> Path:
    return data_dir / FOLDER / hashlib.sha256(token.encode()).hexdigest()


def _purge(folder: Path, now: float) -> None:
    for path in folder.glob("*"):
        try:
            if now - path.stat().st_mtime > HOLD_SECONDS:
                path.unlink()
        except FileNotFoundError:
            pass  # another request purged it first


def hold(data_dir: Path, upload: UploadFile, max_bytes: int) -> HeldFile | None:
    """Keep an uploaded file for the form's next attempt; None when it is larger than any document may be."""
    folder = data_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    _purge(folder, time.time())
    upload.file.seek(0)
    content = upload.file.read(max_bytes + 1)
    upload.file.seek(0)
    if len(content) > max_bytes:
        return None
    token = secrets.token_urlsafe(24)
    filename = Path(upload.filename or "document").name[:255]
    _path(data_dir, token).write_bytes(content)
    _path(data_dir, token).with_suffix(".json").write_text(json.dumps({"filename": filename}))
    return HeldFile(token, filename)


def release(data_dir: Path, held: HeldFile) -> None:
    """Forget a held file once the form that kept it went through."""
    for path in (_path(data_dir, held.token), _path(data_dir, held.token).with_suffix(".json")):
        path.unlink(missing_ok=True)


def take(data_dir: Path, token: str) -> HeldFile | None:
    """The file held under `token`, while it is held."""
    if not token or len(token) > 64:
        return None
    path = _path(data_dir, token)
    try:
        if time.time() - path.stat().st_mtime > HOLD_SECONDS:
            return None
        meta = json.loads(path.with_suffix(".json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return HeldFile(token, str(meta.get("filename") or "document"))
