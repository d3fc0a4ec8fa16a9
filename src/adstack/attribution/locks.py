"""On SQLite one process writes at a time: the postbacks consumer and the attributor take this lock for their
transactions, so they hand the database over in turn instead of sleeping in SQLite's busy handler."""

from __future__ import annotations

import threading

WRITE_LOCK = threading.Lock()
