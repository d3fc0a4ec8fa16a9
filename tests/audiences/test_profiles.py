"""The device profile store in front of the profile tables: a device seen again with nothing new is not written
again until the store's resolution has passed; anything new is written at the next flush."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from adstack.audiences import profiles
from adstack.audiences.ids import device_key, to_signed
from adstack.audiences.models import DeviceApp, DeviceProfile
from tests.audiences.helpers import gaids
from tests.support import Api

GAME = "com.example.game"
OTHER = "com.example.other"
SEEN = datetime(2025, 3, 1, 12, tzinfo=UTC)


def _seen(session: Session, device: str) -> tuple[datetime, str | None]:
    session.expire_all()
    profile = session.get(DeviceProfile, to_signed(device_key(device)))
    assert profile is not None
    return profile.last_seen_at, profile.country


def test_a_device_seen_again_with_nothing_new_is_written_once_per_resolution(
    api: Api, session: Session, session_factory: sessionmaker[Session]
) -> None:
    store = profiles.DeviceProfileStore(session_factory)
    device, other = gaids(2)
    step = profiles.SEEN_AGAIN_RESOLUTION

    def seen(gaid: str, at: datetime, *, packages: list[str] | None = None, usage: dict[str, int] | None = None,
             country: str | None = None) -> None:
        profiles.record_device_profile(store, gaid=gaid, installed_packages=packages or [], usage=usage, seen_at=at,
                                       country=country)

    seen(device, SEEN, country="ID")
    assert store.flush() == 1 and _seen(session, device) == (SEEN, "ID")
    seen(device, SEEN + step / 2)  # nothing new, within the resolution: not written
    seen(other, SEEN + step / 2)  # a device never written is
    assert store.flush() == 1 and _seen(session, device) == (SEEN, "ID")
    seen(device, SEEN + step / 2, country="ID")  # the same country is nothing new
    assert store.flush() == 0
    seen(device, SEEN + step)  # the resolution has passed
    assert store.flush() == 1 and _seen(session, device) == (SEEN + step, "ID")
    seen(device, SEEN + step + timedelta(seconds=1), country="MY")  # a new country is news
    assert store.flush() == 1 and _seen(session, device) == (SEEN + step + timedelta(seconds=1), "MY")
    seen(device, SEEN + step + timedelta(seconds=2), packages=[GAME])  # so are installed apps
    assert store.flush() == 1
    key = to_signed(device_key(device))

    def installed() -> list[str]:
        session.expire_all()
        return list(session.scalars(select(DeviceApp.package).where(DeviceApp.device_key == key,
                                                                    DeviceApp.installed.is_(True))))

    assert installed() == [GAME]
    seen(device, SEEN + step + timedelta(seconds=2), packages=[GAME])  # the same apps again are not
    assert store.flush() == 0
    seen(device, SEEN + step + timedelta(seconds=2), packages=[OTHER, GAME])  # an app more is
    assert store.flush() == 1 and installed() == [GAME, OTHER]
    seen(device, SEEN + step + timedelta(seconds=3), packages=[OTHER])  # and an app less, later: uninstalled
    assert store.flush() == 1 and installed() == [OTHER]
    seen(device, SEEN + step + timedelta(seconds=4), usage={GAME: 30})  # and usage
    assert store.flush() == 1 and _seen(session, device)[0] == SEEN + step + timedelta(seconds=4)
