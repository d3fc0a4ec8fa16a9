"""Files only the platform's own user may read: the database, the secret key, uploaded documents."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

PRIVATE_MODE = 0o600


def create_private(path: Path) -> BinaryIO:
    """Create `path` for writing, readable by its owner only from its first byte (a chmod afterwards leaves a
    moment where it is not). Fails if the path exists, so a planted file or symlink is never written through."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    return os.fdopen(os.open(path, flags, PRIVATE_MODE), "wb")
