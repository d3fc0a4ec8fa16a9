"""The in-process attribution bench at a tiny size: its figure is only worth reading when what it attributed is
what it should have (every postback attributed to its click, each install charged once, the ledger agreeing)."""

from __future__ import annotations

from adstack.bench.postbacks import CPA_BID_MICROS, attribution_figures


def test_attribution_bench_attributes_every_postback_and_charges_each_install_once() -> None:
    postbacks = 60  # 30 devices: an install and a purchase each; every other device sends our click id
    result = attribution_figures(postbacks, batch=25)  # several batches, an install and its event split by one

    installs = postbacks // 2
    assert result["attribution_events"] == postbacks
    assert result["attribution_postback_statuses"] == {"attributed": postbacks}
    assert result["attribution_conversions_by_type"] == {"click": postbacks}
    assert result["attribution_conversions_by_match"] == {"click_id": postbacks // 2, "gaid": postbacks // 2}
    # The ad group pays for installs only, once each, and the ledger holds exactly those charges.
    assert result["attribution_cpa_charged"] == installs
    assert result["attribution_ledger_charges"] == installs
    assert result["attribution_ledger_charged_micros"] == installs * CPA_BID_MICROS
    # One event-store record per conversion and one per charge.
    assert result["attribution_event_records"] == postbacks + installs
    assert result["attribution_events_per_cpu_second"] > 0 and result["attribution_events_per_second"] > 0
