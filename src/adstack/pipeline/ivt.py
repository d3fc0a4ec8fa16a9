"""General invalid traffic (GIVT): the rules that keep robotic and implausible tracking events out of billing,
attribution and predictions.

The rules follow the MRC's Invalid Traffic Detection and Filtration Guidelines Addendum (2015, revised 2020)
and the IAB/ABC International Spiders and Bots List practice: general IVT is what list-based and parameter-based
checks identify without per-user analysis: known crawlers by user agent, data-center addresses, missing or
malformed browser data, and activity-based checks (implausible timing, repeated activity from one device or
address). Each rule here is one of those:

- `datacenter_ip`: the client address lies in an operator-supplied list of data-center ranges;
- `bot_user_agent`: the user agent matches a known crawler (the open `crawler-user-agents` list);
- `empty_user_agent`: no user agent at all;
- `click_without_impression`: a click whose impression was never received (no pixel fired before it);
- `invalid_impression`: a click or video event on an impression that was itself invalid;
- `video_without_impression`: a video event (start, quartiles, complete) of an ad whose impression was never
  received, before it or in the same batch (a VAST player fires the impression with the start, in either order);
- `click_too_fast`: a click sooner after its impression than a person clicks;
- `click_burst`: more clicks on one ad group from one device, or from one address, than allowed in a window;
- `test_auction`: an event of an exchange's test auction (OpenRTB `test=1`), which is not billable;
- `lost_auction`: the impression of a bid whose loss notice came first (stored by the pipeline, not judged here).

An impression our exchange bid won is exempt from the address and user-agent rules: its URL is the billing notice,
which OpenRTB has exchanges fire from their servers, as well as the pixel in the markup, and the exchange that
bills us for it is the one to filter its traffic.

`judge` is a pure function of the records, in log order, and the history that came before them (impression
receipts and recent clicks). The pipeline persists each verdict under its record id, so every consumer and
every replay reads the verdict that was reached once.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from pathlib import Path


class Reason(StrEnum):
    DATACENTER_IP = "datacenter_ip"
    BOT_USER_AGENT = "bot_user_agent"
    EMPTY_USER_AGENT = "empty_user_agent"
    NO_IMPRESSION = "click_without_impression"
    VIDEO_WITHOUT_IMPRESSION = "video_without_impression"
    INVALID_IMPRESSION = "invalid_impression"
    TOO_FAST = "click_too_fast"
    BURST = "click_burst"
    TEST_AUCTION = "test_auction"
    LOST_AUCTION = "lost_auction"


@lru_cache(maxsize=65_536)
def is_bot_user_agent(user_agent: str) -> bool:
    """Cached: a handful of user agents make most traffic, and the list is ~1,500 patterns."""
    import crawleruseragents

    return bool(crawleruseragents.is_crawler(user_agent))


class Networks:
    """A set of CIDR ranges, searched by bisection so thousands of ranges cost one look-up per address."""

    def __init__(self, cidrs: Iterable[str] = ()):
        spans: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for text in cidrs:
            network = ipaddress.ip_network(text.strip(), strict=False)
            spans[network.version].append((int(network.network_address), int(network.broadcast_address)))
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        for version, ranges in spans.items():
            merged: list[list[int]] = []
            for start, end in sorted(ranges):
                if merged and start <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            self._starts[version] = [s for s, _ in merged]
            self._ends[version] = [e for _, e in merged]
        self.size = sum(len(s) for s in self._starts.values())

    def __contains__(self, ip: object) -> bool:
        if not self.size or not isinstance(ip, str):
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        starts, value = self._starts[address.version], int(address)
        at = bisect.bisect_right(starts, value) - 1
        return at >= 0 and value <= self._ends[address.version][at]


def parse_networks(text: str, path: Path | None = None) -> Networks:
    """CIDRs separated by commas or whitespace, plus those of a file (one per line, `#` starts a comment)."""
    items = [part for part in text.replace(",", " ").split() if part]
    if path is not None:
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                items.append(line)
    return Networks(items)


@dataclass(frozen=True)
class Rules:
    min_click_ms: int = 1_000
    burst_clicks: int = 5  # the most clicks allowed per window on one ad group from one device or one address
    burst_ms: int = 60_000
    datacenter: Networks = field(default_factory=Networks)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the rules read of one tracking record."""

    record_id: str
    kind: str  # imp | click | video
    at_ms: int  # when the log received it
    ip: str
    user_agent: str
    impression_id: str
    ad_group_id: int
    device: str  # a stable device key ("" when the ad request had none)
    exchange: bool = False  # served on an exchange's bid, whose billing notice the exchange's server may fire
    test: bool = False  # from an exchange's test auction


@dataclass
class History:
    """What came before a batch: impression receipts (at, invalid) by impression id, and click times by key."""

    impressions: dict[str, tuple[int, bool]] = field(default_factory=dict)
    clicks: dict[tuple[str, int, str], list[int]] = field(default_factory=dict)


def click_keys(observation: Observation) -> list[tuple[str, int, str]]:
    keys = [("ip", observation.ad_group_id, observation.ip)] if observation.ip else []
    if observation.device:
        keys.append(("device", observation.ad_group_id, observation.device))
    return keys


def judge(observations: Sequence[Observation], history: History, rules: Rules) -> list[tuple[Reason, ...]]:
    """The reasons each observation is invalid (empty when valid), in order; `history` is updated as it goes, so
    an impression early in the batch counts for a click later in it."""
    out: list[tuple[Reason, ...]] = []
    batch_impressions = {seen.impression_id for seen in observations if seen.kind == "imp"}
    for seen in observations:
        reasons: list[Reason] = []
        if seen.test:
            reasons.append(Reason.TEST_AUCTION)
        # OpenRTB 2.6, 4.2.3: "firing of the billing notice should be server-side", so the exchange's own
        # server, by its address and user agent, may report an impression our bid won.
        if not (seen.exchange and seen.kind == "imp"):
            if seen.ip in rules.datacenter:
                reasons.append(Reason.DATACENTER_IP)
            if not seen.user_agent.strip():
                reasons.append(Reason.EMPTY_USER_AGENT)
            elif is_bot_user_agent(seen.user_agent):
                reasons.append(Reason.BOT_USER_AGENT)
        if seen.kind == "click":
            receipt = history.impressions.get(seen.impression_id)
            if receipt is None or receipt[0] > seen.at_ms:
                reasons.append(Reason.NO_IMPRESSION)
            else:
                if receipt[1]:
                    reasons.append(Reason.INVALID_IMPRESSION)
                if seen.at_ms - receipt[0] < rules.min_click_ms:
                    reasons.append(Reason.TOO_FAST)
            burst = False
            for key in click_keys(seen):
                times = history.clicks.setdefault(key, [])
                times.append(seen.at_ms)
                recent = sum(1 for t in times if seen.at_ms - rules.burst_ms < t <= seen.at_ms)
                burst = burst or recent > rules.burst_clicks
            if burst:
                reasons.append(Reason.BURST)
        elif seen.kind == "video":
            receipt = history.impressions.get(seen.impression_id)
            if receipt is None and seen.impression_id not in batch_impressions:
                reasons.append(Reason.VIDEO_WITHOUT_IMPRESSION)
            elif receipt is not None and receipt[1]:
                reasons.append(Reason.INVALID_IMPRESSION)
        elif seen.kind == "imp" and seen.impression_id not in history.impressions:
            history.impressions[seen.impression_id] = (seen.at_ms, bool(reasons))
        out.append(tuple(reasons))
    return out
