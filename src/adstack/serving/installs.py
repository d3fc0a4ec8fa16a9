"""Install history: per device key and package, when ad requests first and last reported the package installed.

The guide's target groups tell "not currently installed" from "not installed within 90 days" and "never
installed"; only a history can tell them apart. It is kept on the hot path, so it is kept small: only packages
that ad groups promote are tracked (a report of a hundred apps costs a set intersection), devices are forgotten
least-recently-reported first past a bound, and a lookup is one dictionary read. The durable record is the device
profile store's `device_apps` table, which the runtime loads back when it starts.

With `ADSTACK_REDIS_URL` set, `RedisInstallHistory` keeps it in Redis instead, one hash per device, so every
serving worker sees what any of them was told (a lookup is then one HGETALL).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any

# Source: Mi Ads Usage Guide, 3.1.2 Create Ad Group, "Select the target group": "Not installed within 90 days:
# ... distributing to users who have not installed it within 90 days by default".
NOT_INSTALLED_WINDOW = timedelta(days=90)
# The target groups that look back; only the packages their ad groups promote are worth a history.
HISTORY_TARGET_GROUPS = frozenset({"not_installed_90d", "never_installed"})
MAX_DEVICES = 1_000_000

# (first seen, last seen) as epoch seconds.
Span = tuple[float, float]
NO_HISTORY: Mapping[str, Span] = MappingProxyType({})
log = logging.getLogger(__name__)


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


# A device's hash outlives its last report by this long (refreshed on every report): Redis has no bound on
# devices as the in-process LRU has, and a device unseen for over a year has no history worth targeting by.
REDIS_TTL_SECONDS = 400 * 86_400
LOAD_BATCH = 500

# KEYS[1] the device's hash; ARGV[1] its TTL, then (package, first, last) triples merged as min(first), max(last).
_MERGE = """
for i = 2, #ARGV, 3 do
  local first, last = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local known = redis.call('HGET', KEYS[1], ARGV[i])
  if known then
    local sep = string.find(known, ':', 1, true)
    first = math.min(first, tonumber(string.sub(known, 1, sep - 1)))
    last = math.max(last, tonumber(string.sub(known, sep + 1)))
  end
  redis.call('HSET', KEYS[1], ARGV[i], string.format('%.3f:%.3f', first, last))
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""


class RedisInstallHistory(InstallHistory):
    """The same history in Redis, shared by serving workers. A Redis that cannot be reached loses reports and
    answers lookups with no history (the request is served as for an unknown device), never an error."""

    def __init__(self, url: str, *, prefix: str = "adstack:installs:", client: Any = None,
                 ttl_seconds: int = REDIS_TTL_SECONDS):
        super().__init__()
        import redis

        self._redis = client or redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.5,
                                                     health_check_interval=30)
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError,)
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._merge_script = self._redis.register_script(_MERGE)
        self._last_warning = 0.0

    def __len__(self) -> int:
        return sum(1 for _ in self._redis.scan_iter(match=self._prefix + "*", count=1000))

    def _key(self, device_key: int) -> str:
        return f"{self._prefix}{device_key}"

    def _warn(self, what: str) -> None:
        now = time.monotonic()
        if now - self._last_warning > 60:  # once a minute, not once a request
            self._last_warning = now
            log.warning("install history in Redis unavailable (%s)", what, exc_info=True)

    def observe(self, device_key: int, installed: Iterable[str], at: float) -> None:
        relevant = self._tracked.intersection(installed)
        if not relevant:
            return
        args: list[Any] = [self._ttl]
        for package in sorted(relevant):
            args += [package, at, at]
        try:
            self._merge_script(keys=[self._key(device_key)], args=args)
        except self._errors:
            self._warn("report")

    def load(self, rows: Iterable[tuple[int, str, float, float]]) -> int:
        by_device: dict[int, list[Any]] = defaultdict(list)
        count = 0
        for device_key, package, first, last in rows:
            by_device[device_key] += [package, first, last]
            count += 1
        devices = list(by_device.items())
        try:
            for start in range(0, len(devices), LOAD_BATCH):
                pipe = self._redis.pipeline(transaction=False)
                for device_key, spans in devices[start:start + LOAD_BATCH]:
                    self._merge_script(keys=[self._key(device_key)], args=[self._ttl, *spans], client=pipe)
                pipe.execute()
        except self._errors:
            self._warn("load")
            return 0
        return count

    def of(self, device_key: int | None) -> Mapping[str, Span]:
        """Read from Redis only when eligibility first asks: most requests reach no ad group that looks back."""
        if device_key is None or not self._tracked:
            return NO_HISTORY
        return _RedisHistory(self, device_key)

    def fetch(self, device_key: int) -> Mapping[str, Span]:
        try:
            raw = self._redis.hgetall(self._key(device_key))
        except self._errors:
            self._warn("lookup")
            return NO_HISTORY
        history: dict[str, Span] = {}
        for package, span in raw.items():
            first, _, last = (span.decode() if isinstance(span, bytes) else str(span)).partition(":")
            try:
                history[package.decode() if isinstance(package, bytes) else str(package)] = (float(first),
                                                                                           float(last))
            except ValueError:
                continue  # not written by this class
        return history or NO_HISTORY


class _RedisHistory(Mapping[str, Span]):
    """A device's history in Redis, fetched on first use and kept for the rest of the request."""

    __slots__ = ("_device_key", "_history", "_source")

    def __init__(self, source: RedisInstallHistory, device_key: int):
        self._source = source
        self._device_key = device_key
        self._history: Mapping[str, Span] | None = None

    def _fetched(self) -> Mapping[str, Span]:
        if self._history is None:
            self._history = self._source.fetch(self._device_key)
        return self._history

    def __getitem__(self, package: str) -> Span:
        return self._fetched()[package]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fetched())

    def __len__(self) -> int:
        return len(self._fetched())


def make_install_history(redis_url: str | None, prefix: str = "adstack:") -> InstallHistory:
    """`prefix`: the deployment's (settings.redis_prefix); the histories' keys are under `<prefix>installs:`."""
    return RedisInstallHistory(redis_url, prefix=f"{prefix}installs:") if redis_url else InstallHistory()
