"""The guide's install target groups through the SDK endpoint: "not currently installed", "not installed within
90 days" and "never installed" differ once a device has had the promoted app and no longer reports it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from adstack.core.timeutil import shifted_clock
from adstack.finance.models import EntryType
from adstack.serving.installs import InstallHistory
from tests.campaigns.helpers import ad_space, approved_ad_group, campaign, creative, ledger, publisher
from tests.serving.test_api import eventually
from tests.support import Actor, Api, expect

PROMOTED = "com.example.game"
GROUPS = ("not_currently_installed", "not_installed_90d", "never_installed")


def _approved_creative(api: Api, actor: Actor, admin: Actor, ad_group_id: int) -> None:
    made = creative(api, actor, ad_group_id)
    expect(api.client.post(f"/api/v1/creatives/{made['id']}/submit", headers=actor.headers), 200)
    expect(
        api.client.post(f"/api/v1/creatives/{made['id']}/review", headers=admin.headers, json={"decision": "approve"}),
        200,
    )


def _setup(api: Api) -> tuple[int, dict[int, str]]:
    """One ad space and one ad group per target group, all promoting the same app."""
    admin = api.admin()
    actor = api.approved_account(admin)
    ledger(api.session, actor.account_id, 100_000_000, EntryType.TOP_UP)
    space = ad_space(api, admin, publisher(api, admin)["id"])
    promoted = campaign(api, actor, package_name=PROMOTED)
    groups = {}
    for target_group in GROUPS:
        group = approved_ad_group(
            api, actor, admin, promoted["id"], name=target_group, target_group=target_group, ad_space_ids=[space["id"]]
        )
        _approved_creative(api, actor, admin, group["id"])
        groups[group["id"]] = target_group
    return space["id"], groups


def _served(api: Api, space_id: int, gaid: str, installed: list[str]) -> set[str] | None:
    """The target groups of the ads served to the device now; None while the space is not serving yet."""
    answer = api.client.post(
        "/v1/ads",
        json={
            "ad_space_id": space_id,
            "count": 3,
            "device": {"gaid": gaid, "country": "ID"},
            "app": {"package": "com.mi.browser", "installed_packages": installed},
        },
    )
    if answer.status_code == 404:
        return None
    return {GROUP_NAMES[ad["ad_group_id"]] for ad in expect(answer, 200)["ads"]}


GROUP_NAMES: dict[int, str] = {}


def test_install_history_tells_the_three_not_installed_groups_apart(api: Api) -> None:
    space_id, groups = _setup(api)
    GROUP_NAMES.update(groups)
    fresh = "38400000-8cf0-11bd-b23e-10b96e4e0001"
    assert eventually(lambda: _served(api, space_id, fresh, ["com.whatsapp"]) == set(GROUPS))

    long_ago = "38400000-8cf0-11bd-b23e-10b96e4e0002"
    lately = "38400000-8cf0-11bd-b23e-10b96e4e0003"
    # 100 and 10 days ago, each device reported the promoted app: while installed, no group serves it.
    with shifted_clock(-timedelta(days=100)):
        assert _served(api, space_id, long_ago, [PROMOTED, "com.whatsapp"]) == set()
    with shifted_clock(-timedelta(days=10)):
        assert _served(api, space_id, lately, ["com.whatsapp", PROMOTED]) == set()

    # Today neither reports it any more.
    assert _served(api, space_id, long_ago, ["com.whatsapp"]) == {"not_currently_installed", "not_installed_90d"}
    assert _served(api, space_id, lately, ["com.whatsapp"]) == {"not_currently_installed"}
    # A device that never had it is every group's.
    assert _served(api, space_id, fresh, ["com.whatsapp"]) == set(GROUPS)
    # A request that reports no packages is judged by the history alone.
    assert _served(api, space_id, lately, []) == {"not_currently_installed"}


def test_history_is_kept_only_for_promoted_packages_and_survives_a_restart_of_serving(api: Api) -> None:
    space_id, groups = _setup(api)
    GROUP_NAMES.update(groups)
    device = "38400000-8cf0-11bd-b23e-10b96e4e0004"
    assert eventually(lambda: _served(api, space_id, device, ["com.whatsapp"]) == set(GROUPS))
    runtime: Any = api.client.app.state.serving  # type: ignore[attr-defined]
    assert runtime.install_history.tracked == {PROMOTED}
    runtime.device_profiles.flush()  # the store keeps a device's newest report per flush
    with shifted_clock(-timedelta(days=30)):
        _served(api, space_id, device, [PROMOTED, "com.whatsapp", "com.other.app"])
    runtime.device_profiles.flush()

    # A new process knows only what the device profile store kept.
    runtime.install_history = InstallHistory()
    assert _served(api, space_id, device, ["com.whatsapp"]) == set(GROUPS)
    runtime.refresh(force=True)
    runtime.load_install_history()
    assert _served(api, space_id, device, ["com.whatsapp"]) == {"not_currently_installed"}
