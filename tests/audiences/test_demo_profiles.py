"""The demo's phones report their everyday apps and how long they used them, so label audiences built over the
demo's data are not empty."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from adstack.audiences import label_audiences
from adstack.audiences.labels import LabelRule
from adstack.audiences.models import DeviceApp, DeviceAppUsage, DeviceProfile
from adstack.core.settings import Settings
from adstack.core.timeutil import utcnow
from adstack.demo import DemoConfig, run


def test_demo_devices_feed_installed_app_behaviour_and_usage_labels(settings: Settings, session: Session) -> None:
    run(settings, DemoConfig(days=1, requests_per_day=120, devices=40, seed=11))
    assert session.scalar(select(func.count()).select_from(DeviceProfile)) > 10
    assert session.scalar(select(func.count()).select_from(DeviceApp)) > 20
    assert session.scalar(select(func.count()).select_from(DeviceAppUsage)) > 20
    # The demo's devices are Indonesian and Indian; India's cluster finds its own among them.
    india = label_audiences.region_countries(session, "IN")
    now = utcnow()

    def size(conditions: list[dict[str, object]]) -> int:
        rule = LabelRule.model_validate({"conditions": conditions, "seen_within_days": 7})
        return len(label_audiences.materialise(session, rule, now=now, countries=india))

    everyone = size([{"kind": "not_installed_apps", "packages": ["com.nothing.installed"]}])
    social = size([{"kind": "installed_categories", "categories": ["social", "communication"]}])
    active = size(
        [
            {
                "kind": "active_in_categories",
                "categories": ["social", "communication", "video", "games"],
                "within_days": 7,
            }
        ]
    )
    heavy = size([{"kind": "usage_time", "category": "games", "within_days": 7, "min_seconds": 60}])
    assert 0 < social < everyone and 0 < active < everyone and 0 < heavy < everyone
