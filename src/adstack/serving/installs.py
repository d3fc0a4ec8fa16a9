"""Install history: per device key and package, when ad requests first and last reported the package installed.

The guide's target groups tell "not currently installed" from "not installed within 90 days" and "never
installed"; only a history can tell them apart. It is kept on the hot path, so it is kept small: only packages
that ad groups promote are tracked (a report of a hundred apps costs a set intersection), devices are forgotten
least-recently-reported first past a bound, and a lookup is one dictionary read. The durable record is the device
profile store's `device_apps` table, which the runtime loads back when it starts.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import timedelta
from types import MappingProxyType

# Source: Mi Ads Usage Guide, 3.1.2 Create Ad Group, "Select the target group": "Not installed within 90 days:
# ... distributing to users who have not installed it within 90 days by default".
NOT_INSTALLED_WINDOW = timedelta(days=90)
MAX_DEVICES = 1_000_000

# (first seen, last seen) as epoch seconds.
Span = tuple[float, float]
NO_HISTORY: Mapping[str, Span] = MappingProxyType({})


class InstallHistory:
    def __init__(self, *, max_devices: int = MAX_DEVICES):
        self.max_devices = max_devices
        self._devices: OrderedDict[int, dict[str, Span]] = OrderedDict()
        self._tracked: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._devices)

    @property
    def tracked(self) -> frozenset[str]:
        return self._tracked

    def track(self, packages: Iterable[str]) -> None:
        """The packages worth remembering: those ad groups promote (set on each snapshot rebuild)."""
        self._tracked = frozenset(p for p in packages if p)

    def observe(self, device_key: int, installed: Iterable[str], at: float) -> None:
        """A device reported these packages installed at `at`."""
        relevant = self._tracked.intersection(installed)
        if relevant:
            self._merge(device_key, ((p, at, at) for p in relevant))

    def load(self, rows: Iterable[tuple[int, str, float, float]]) -> int:
        """Merge stored (device key, package, first seen, last seen) rows; how many were taken."""
        count = 0
        for device_key, package, first, last in rows:
            self._merge(device_key, ((package, first, last),), touch=False)
            count += 1
        return count

    def _merge(self, device_key: int, spans: Iterable[tuple[str, float, float]], *, touch: bool = True) -> None:
        with self._lock:
            devices = self._devices
            history = devices.get(device_key)
            if history is None:
                if len(devices) >= self.max_devices:
                    devices.popitem(last=False)
                history = devices[device_key] = {}
            elif touch:
                devices.move_to_end(device_key)
            for package, first, last in spans:
                known = history.get(package)
                history[package] = (first, last) if known is None else (min(known[0], first), max(known[1], last))

    def of(self, device_key: int | None) -> Mapping[str, Span]:
        """The device's history (read-only use); empty for an unknown device or none."""
        if device_key is None:
            return NO_HISTORY
        return self._devices.get(device_key) or NO_HISTORY


def installed_within(history: Mapping[str, Span], package: str, now: float, window: timedelta) -> bool:
    span = history.get(package)
    return span is not None and span[1] >= now - window.total_seconds()
