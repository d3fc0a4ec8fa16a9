"""Every search by time takes the same bounds: a `since`/`until` past the searchable years is refused naming the
field and the range, never a 500 (year 1 or 9999 in a far zone cannot be moved to UTC); a day typed into the
console's filters outside them is no bound."""

from __future__ import annotations

import pytest

from tests.console.support import sign_in
from tests.support import Api, expect

SEARCHES = ("/api/v1/operation-logs", "/api/v1/operation-logs/export.csv", "/api/v1/finance/transfers",
            "/api/v1/finance/transfers/export.csv", "/api/v1/attribution/verdict-agreement")
EXTREMES = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999-14:00", "0001-01-01T00:00:00",
            "9999-12-31T23:59:59")


@pytest.mark.parametrize("path", SEARCHES)
def test_a_search_bound_past_the_searchable_years_is_refused_with_its_range(api: Api, path: str) -> None:
    admin = api.admin()
    advertiser = api.approved_account(admin)
    for actor in (advertiser, admin):
        for name in ("since", "until"):
            for value in EXTREMES:
                response = api.client.get(path, headers=actor.headers, params={name: value})
                [field] = expect(response, 422)["error"]["fields"]
                assert (field["field"], field["rule"]) == (name, "datetime_range")
                assert field["limit"] == ["2000-01-01T00:00:00+00:00", "2200-01-01T00:00:00+00:00"]
        expect(api.client.get(path, headers=actor.headers,
                              params={"since": "2000-01-01T00:00:00Z", "until": "2199-12-31T23:59:59+14:00"}), 200)


def test_console_filters_ignore_days_past_the_searchable_years(api: Api) -> None:
    advertiser = api.approved_account(time_zone="Pacific/Kiritimati")  # UTC+14
    sign_in(api.client, advertiser.email, "correct horse battery")
    for page in ("/console/logs", "/console/finance"):
        for params in ({"since": "0001-01-01"}, {"until": "9999-12-31"},
                       {"since": "0001-01-01", "until": "9999-12-31"}):
            assert api.client.get(page, params=params).status_code == 200
