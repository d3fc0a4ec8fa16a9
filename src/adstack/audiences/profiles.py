"""The device profile store label audiences are built from: what ad requests report about their devices
(installed apps, app usage, country), buffered off the serving hot path and pruned."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import Table, and_, bindparam, case, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from adstack.audiences.ids import device_key, sha256_device_key, to_signed
from adstack.audiences.models import DeviceApp, DeviceAppUsage, DeviceProfile
from adstack.core.db import dialect_insert, session_scope
from adstack.core.timeutil import as_utc, utcnow

# What the device profile store keeps; label conditions look back at most this far.
USAGE_RETENTION_DAYS = 90
DEVICE_RETENTION_DAYS = 180
MAX_REPORTED_PACKAGES = 500
MAX_USAGE_SECONDS_PER_DAY = 86_400
# A device that asks for ads again with nothing new to report (the same apps or none, no usage, the same country)
# is written again only this long after its last write: label audiences look back whole days, and rewriting every
# device that asks for an ad every few seconds cost the serving process a sixth of its CPU.
SEEN_AGAIN_RESOLUTION = timedelta(minutes=10)
MAX_REMEMBERED_WRITES = 200_000  # about 60 MB
_PACKAGE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+")


# ---------- the device profile store ----------


@dataclass
class _DeviceReport:
    """What ad requests said about one device since the last write, merged."""

    key: int
    sha256_key: int
    seen_at: datetime
    packages: tuple[str, ...] | None = None
    packages_seen_at: datetime | None = None
    usage: dict[tuple[str, date], int] = field(default_factory=dict)
    country: str | None = None

    def merge(self, packages: tuple[str, ...] | None, usage: Mapping[str, int], seen_at: datetime,
              country: str | None = None) -> None:
        if packages is not None and (self.packages_seen_at is None or seen_at >= self.packages_seen_at):
            self.packages, self.packages_seen_at = packages, seen_at
        if country is not None and (self.country is None or seen_at >= self.seen_at):
            self.country = country
        self.seen_at = max(self.seen_at, seen_at)
        day = seen_at.date()
        for package, seconds in usage.items():
            slot = (package, day)
            self.usage[slot] = min(self.usage.get(slot, 0) + seconds, MAX_USAGE_SECONDS_PER_DAY)


def _clean_report(installed_packages: Sequence[str], usage: Mapping[str, int] | None
                  ) -> tuple[tuple[str, ...] | None, dict[str, int]]:
    """Reports come from devices: keep well-formed package names and sane durations, drop the rest."""
    packages = tuple(dict.fromkeys(p for p in installed_packages[:MAX_REPORTED_PACKAGES]
                                   if isinstance(p, str) and len(p) <= 255 and _PACKAGE.fullmatch(p)))
    cleaned_usage: dict[str, int] = {}
    for package, seconds in (usage or {}).items():
        if isinstance(package, str) and len(package) <= 255 and _PACKAGE.fullmatch(package) \
                and isinstance(seconds, int) and seconds > 0:
            cleaned_usage[package] = min(seconds, MAX_USAGE_SECONDS_PER_DAY)
    # An empty list means the request did not report installed apps, not that none are installed.
    return (packages or None), cleaned_usage


def _apps_digest(packages: tuple[str, ...]) -> bytes:
    return hashlib.blake2b("\n".join(sorted(packages)).encode(), digest_size=16).digest()


class DeviceProfileStore:
    """A buffer in front of the device profile tables, for the serving hot path: `record` only merges into
    memory; `flush` writes every buffered device in one transaction (the background task calls it every few
    seconds, and `record` itself when the buffer is full)."""

    def __init__(self, factory: sessionmaker[Session], *, max_pending: int = 20_000):
        self._factory = factory
        self._max_pending = max_pending
        self._pending: dict[int, _DeviceReport] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        # device key -> what was last written of it: when it was seen, its country and a digest of its apps
        self._written: dict[int, tuple[datetime, str | None, bytes | None]] = {}

    def _is_news(self, report: _DeviceReport) -> bool:
        if report.usage:
            return True
        written = self._written.get(report.key)
        return written is None or report.seen_at - written[0] >= SEEN_AGAIN_RESOLUTION or (
            report.country is not None and report.country != written[1]) or (
            report.packages is not None and _apps_digest(report.packages) != written[2])

    def __len__(self) -> int:
        return len(self._pending)

    def record(self, *, gaid: str, installed_packages: Sequence[str], usage: Mapping[str, int] | None,
               seen_at: datetime, country: str | None = None) -> None:
        packages, cleaned_usage = _clean_report(installed_packages, usage)
        key = device_key(gaid)
        seen_at = as_utc(seen_at)
        with self._lock:
            report = self._pending.get(key)
            if report is None:
                report = self._pending[key] = _DeviceReport(key=key, sha256_key=sha256_device_key(gaid),
                                                            seen_at=seen_at)
            report.merge(packages, cleaned_usage, seen_at, _country(country))
            full = len(self._pending) >= self._max_pending
        if full:
            self.flush()

    def flush(self) -> int:
        """Write the buffered devices that have something new; how many were written."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            news = [report for report in pending.values() if self._is_news(report)]
            if not news:
                return 0
            with session_scope(self._factory) as session:
                write_device_reports(session, news)
            if len(self._written) + len(news) > MAX_REMEMBERED_WRITES:
                self._written.clear()  # forgetting only costs a write that was not needed
            for report in news:
                written = self._written.get(report.key)
                country = report.country if report.country is not None else written[1] if written else None
                apps = _apps_digest(report.packages) if report.packages is not None else written[2] if written \
                    else None
                self._written[report.key] = (report.seen_at, country, apps)
            return len(news)


def record_device_profile(session_or_store: Session | DeviceProfileStore, *, gaid: str,
                          installed_packages: Sequence[str], usage: Mapping[str, int] | None,
                          seen_at: datetime, country: str | None = None) -> None:
    """Note what an ad request reported about its device: installed packages (the full list, or empty when
    not reported), seconds of use per package since the last report, and when.

    With a `DeviceProfileStore` this only buffers (cheap, for the hot path); with a session it writes at once
    and the caller commits. The raw GAID is hashed here and never stored."""
    if isinstance(session_or_store, DeviceProfileStore):
        session_or_store.record(gaid=gaid, installed_packages=installed_packages, usage=usage, seen_at=seen_at,
                                country=country)
        return
    packages, cleaned_usage = _clean_report(installed_packages, usage)
    seen_at = as_utc(seen_at)
    report = _DeviceReport(key=device_key(gaid), sha256_key=sha256_device_key(gaid), seen_at=seen_at)
    report.merge(packages, cleaned_usage, seen_at, _country(country))
    write_device_reports(session_or_store, [report])


def _country(value: str | None) -> str | None:
    """An ISO alpha-2 code as requests send it, upper-cased; anything else is unknown."""
    if not value or len(value) != 2 or not value.isascii() or not value.isalpha():
        return None
    return value.upper()


def write_device_reports(session: Session, reports: Iterable[_DeviceReport]) -> None:
    """Batched upserts, in key order so concurrent writers do not deadlock. Core statements on the tables, not
    the ORM's bulk path: this runs beside the serving hot path, and the ORM's per-row bookkeeping was most of its
    cost."""
    ordered = sorted(reports, key=lambda r: r.key)
    if not ordered:
        return
    insert_ = dialect_insert(session)
    profile_table: Table = DeviceProfile.__table__  # type: ignore[assignment]
    app_table: Table = DeviceApp.__table__  # type: ignore[assignment]
    usage_table: Table = DeviceAppUsage.__table__  # type: ignore[assignment]
    profiles = insert_(profile_table)
    session.execute(profiles.on_conflict_do_update(
        index_elements=[profile_table.c.device_key],
        set_={"sha256_key": profiles.excluded.sha256_key,
              # The latest request's country wins; a request that named none keeps the known one.
              "country": case((and_(profiles.excluded.country.is_not(None),
                                    profiles.excluded.last_seen_at >= profile_table.c.last_seen_at),
                               profiles.excluded.country), else_=profile_table.c.country),
              "last_seen_at": case((profiles.excluded.last_seen_at > profile_table.c.last_seen_at,
                                    profiles.excluded.last_seen_at), else_=profile_table.c.last_seen_at)},
    ), [{"device_key": to_signed(r.key), "sha256_key": to_signed(r.sha256_key), "country": r.country,
         "first_seen_at": r.seen_at, "last_seen_at": r.seen_at} for r in ordered])
    app_rows = [{"device_key": to_signed(r.key), "package": p, "installed": True,
                 "first_seen_at": r.packages_seen_at, "last_seen_at": r.packages_seen_at}
                for r in ordered if r.packages for p in sorted(r.packages)]
    if app_rows:
        apps = insert_(app_table)
        session.execute(apps.on_conflict_do_update(
            index_elements=[app_table.c.device_key, app_table.c.package],
            set_={"installed": True, "last_seen_at": apps.excluded.last_seen_at},
        ), app_rows)
    reported = [{"p_key": to_signed(r.key), "p_seen": r.packages_seen_at} for r in ordered if r.packages]
    if reported:
        # Apps a newer full report no longer lists were uninstalled. The upsert above has just set each listed
        # app's last sighting to the report's time, so the apps seen before it are exactly the unlisted ones:
        # one statement for every device, rather than one per device with its list.
        session.execute(update(app_table).where(
            app_table.c.device_key == bindparam("p_key"), app_table.c.installed.is_(True),
            app_table.c.last_seen_at < bindparam("p_seen"),
        ).values(installed=False), reported)
    usage_rows = [{"device_key": to_signed(r.key), "package": package, "day": day, "seconds": seconds}
                  for r in ordered for (package, day), seconds in sorted(r.usage.items())]
    if usage_rows:
        usage = insert_(usage_table)
        summed = usage_table.c.seconds + usage.excluded.seconds
        session.execute(usage.on_conflict_do_update(
            index_elements=[usage_table.c.device_key, usage_table.c.package, usage_table.c.day],
            set_={"seconds": case((summed > MAX_USAGE_SECONDS_PER_DAY, MAX_USAGE_SECONDS_PER_DAY), else_=summed)},
        ), usage_rows)


def prune_device_profiles(session: Session, *, now: datetime | None = None) -> None:
    """Forget usage older than the label look-back, and devices not seen for half a year."""
    now = now or utcnow()
    session.execute(delete(DeviceAppUsage).where(
        DeviceAppUsage.day < (now - timedelta(days=USAGE_RETENTION_DAYS)).date()))
    stale = select(DeviceProfile.device_key).where(
        DeviceProfile.last_seen_at < now - timedelta(days=DEVICE_RETENTION_DAYS))
    session.execute(delete(DeviceApp).where(DeviceApp.device_key.in_(stale)))
    session.execute(delete(DeviceAppUsage).where(DeviceAppUsage.device_key.in_(stale)))
    session.execute(delete(DeviceProfile).where(DeviceProfile.last_seen_at
                                                < now - timedelta(days=DEVICE_RETENTION_DAYS)))
