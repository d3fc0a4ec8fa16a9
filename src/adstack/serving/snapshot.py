"""What may serve, frozen: the immutable picture of the control plane that the hot path reads.

The snapshot holds only ad groups that could serve at all (on, approved, within their booking, with an approved
account and at least one approved creative); the per-request rules (schedule hour, budgets, frequency, install
state, audiences) are checked against it by `eligibility`. A refresher builds a new snapshot in the background and
swaps one reference, so a request sees one consistent snapshot from start to end and never waits for a rebuild.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType

from adstack.serving.fx import FxRates
from adstack.serving.index import TargetingIndex
from adstack.serving.request import ANY_MEDIA, Slot

# Bid types as the snapshot knows them. "cpm" is the open-auction CPM bid; the brand types are reserved tiers.
CPM = "cpm"
CPC = "cpc"
CPA = "cpa"
CPT = "cpt"
GUARANTEED_CPM = "guaranteed_cpm"
RESERVED_BID_TYPES = frozenset({CPT, GUARANTEED_CPM})
AUCTION_BID_TYPES = frozenset({CPM, CPC, CPA})


@dataclass(frozen=True, slots=True)
class AssetCombination:
    """One way to assemble a creative from its uploaded materials (dynamic creative)."""

    key: str  # stable within its creative, e.g. "t0-d1-i2"
    title: str = ""
    description: str = ""
    image_url: str = ""
    video_url: str = ""
    icon_url: str = ""
    button: str = ""
    width: int = 0
    height: int = 0
    duration_ms: int = 0
    icon_width: int = 0  # of the uploaded icon; 0 when unknown
    icon_height: int = 0
    # MIME types of the uploaded files, held to an exchange's `mimes` allowlists; "" when unknown.
    image_mime: str = ""
    icon_mime: str = ""


@dataclass(frozen=True, slots=True)
class CreativeSnap:
    id: int
    ad_group_id: int
    name: str
    format: str
    width: int  # of the main visual (image or video); 0 when the format has none
    height: int
    has_image: bool
    has_video: bool
    click_url: str
    combinations: tuple[AssetCombination, ...]
    deeplink: str = ""
    impression_monitor_urls: tuple[str, ...] = ()
    # (event, url) pairs, event one of start, first_quartile, midpoint, third_quartile, complete
    video_tracking_urls: tuple[tuple[str, str], ...] = ()
    duration_ms: int = 0
    # Creative-wide materials of the guide's formats, the same in every combination.
    business_name: str = ""
    business_phone: str = ""  # E.164
    subtitles: tuple[str, ...] = ()
    button_1: str = ""
    button_2: str = ""
    background_color: str = ""  # #RRGGBB
    top_button: bool = False
    cover_image_url: str = ""
    cover_width: int = 0
    cover_height: int = 0
    cover_image_mime: str = ""
    language: str = ""  # ISO 639-1 of the ad's text; "" when the advertiser named none

    @property
    def is_native_capable(self) -> bool:
        """A native ad needs at least a title and a visual; a message card (the guide's SMS blocks, which have
        neither) its business name and phone."""
        return (bool(self.business_name and self.business_phone)
                or any(c.title and (c.image_url or c.icon_url or c.video_url) for c in self.combinations))


@dataclass(frozen=True, slots=True)
class Schedule:
    time_zone: str = "UTC"
    start: datetime | None = None  # UTC instants; None = open
    end: datetime | None = None
    # Hour-of-week in the ad group's zone, 0 = Monday 00:00-01:00 ... 167 = Sunday 23:00-24:00; None = all day.
    hours_of_week: frozenset[int] | None = None
    # CPT: the booked time slots (UTC); the ad group serves only inside one. Empty = no slot restriction.
    booked_slots: tuple[tuple[datetime, datetime], ...] = ()


@dataclass(frozen=True, slots=True)
class UsageRule:
    """At least `min_minutes` a day in a package, or in apps of a category."""

    min_minutes: int
    package: str | None = None
    category: str | None = None


@dataclass(frozen=True, slots=True)
class BehaviourRule:
    action: str  # installed, activated, paid, uninstalled
    packages: frozenset[str] = frozenset()
    categories: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TargetingSnap:
    """Every set is an OR of its values; an empty set does not restrict. Text values are lowercased."""

    countries: frozenset[str] = frozenset()
    genders: frozenset[str] = frozenset()
    age_ranges: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()
    networks: frozenset[str] = frozenset()
    carriers: frozenset[str] = frozenset()
    device_models: frozenset[str] = frozenset()
    os_min: tuple[int, ...] | None = None
    os_max: tuple[int, ...] | None = None
    placement_types: frozenset[str] = frozenset()
    publisher_ids: frozenset[int] = frozenset()
    ad_space_ids: frozenset[int] = frozenset()
    deal_ids: frozenset[str] = frozenset()
    installed_apps: frozenset[str] = frozenset()
    installed_categories: frozenset[str] = frozenset()
    not_installed_apps: frozenset[str] = frozenset()
    not_installed_categories: frozenset[str] = frozenset()
    behaviours: tuple[BehaviourRule, ...] = ()
    usage: tuple[UsageRule, ...] = ()
    include_audiences: tuple[int, ...] = ()
    exclude_audiences: tuple[int, ...] = ()
    target_group: str = "all_users"
    promoted_package: str = ""
    # The guide's "exceptions": publisher apps and ad spaces this ad group never serves on.
    excluded_publisher_packages: frozenset[str] = frozenset()
    excluded_ad_space_ids: frozenset[int] = frozenset()

    @property
    def uses_audiences(self) -> bool:
        return bool(self.include_audiences or self.exclude_audiences)

    @property
    def needs_device_checks(self) -> bool:
        """Whether anything beyond the index must be checked against the device."""
        return bool(self.installed_apps or self.installed_categories or self.not_installed_apps
                    or self.not_installed_categories or self.behaviours or self.usage or self.uses_audiences
                    or self.os_min or self.os_max or self.excluded_publisher_packages or self.excluded_ad_space_ids
                    or (self.promoted_package and self.target_group != "all_users"))


def domain_suffixes(domains: Iterable[str]) -> frozenset[str]:
    """The domains and all their parent domains, lower-case, without a trailing dot."""
    found: set[str] = set()
    for domain in domains:
        labels = domain.strip().rstrip(".").lower().split(".")
        found.update(".".join(labels[n:]) for n in range(len(labels)) if labels[n])
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class AdGroupSnap:
    id: int
    name: str
    account_id: int
    campaign_id: int
    bid_type: str
    bid_micros: int  # in the account's currency: CPM per 1,000, CPC per click, CPA per conversion, CPT per slot
    creatives: tuple[CreativeSnap, ...]
    targeting: TargetingSnap = field(default_factory=TargetingSnap)
    schedule: Schedule = field(default_factory=Schedule)
    currency: str = "USD"
    objective: str = "performance"
    conversion_event: str = ""
    daily_budget_micros: int | None = None
    total_budget_micros: int | None = None
    pacing: str = "even"
    frequency_cap: int | None = None  # impressions per device per local day
    booked_impressions: int | None = None  # guaranteed CPM: the volume to deliver over the booking
    advertiser_domains: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()  # the campaign's IAB Content Taxonomy 1.0 categories, e.g. IAB9-30
    campaign_name: str = ""
    # The promoted app's measurement-partner view-through link, with our placeholders: fired with each impression.
    view_through_url: str = ""
    # Each advertiser domain and every parent domain of it (shop.nike.com: nike.com, com), lower-case: a blocked
    # domain (OpenRTB badv) blocks its subdomains, one set lookup per request. Built once with the snapshot.
    domain_suffixes: frozenset[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "domain_suffixes", domain_suffixes(self.advertiser_domains))

    @property
    def reserved(self) -> bool:
        return self.bid_type in RESERVED_BID_TYPES


@dataclass(frozen=True, slots=True)
class AccountSnap:
    id: int
    currency: str = "USD"
    # What the ledger said when the snapshot was built: total charged so far and what may still be spent.
    charged_micros: int = 0
    available_micros: int = 0

    @property
    def spend_cap_micros(self) -> int:
        """The account's lifetime spend may not pass this: charged so far plus what is left."""
        return self.charged_micros + max(self.available_micros, 0)


@dataclass(frozen=True, slots=True)
class PublisherSnap:
    id: int
    name: str
    app_package: str = ""
    platform: str = "android"
    country: str = ""


@dataclass(frozen=True, slots=True)
class AdSpaceSnap:
    id: int
    publisher_id: int
    name: str
    placement_type: str
    accepted_formats: frozenset[str] = frozenset()  # empty = any format
    sizes: frozenset[tuple[int, int]] = frozenset()  # empty = any size
    reserve_price_micros: int = 0  # eCPM floor in the platform currency (USD micros per 1,000 impressions)
    # What an SDK request for this space may be filled with: every medium, in the space's sizes and formats. Built
    # once with the snapshot, so the targeting index finds its fitting set cached on every request.
    slot: Slot = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "slot", Slot(media=ANY_MEDIA, sizes=self.sizes, formats=self.accepted_formats))


@dataclass(frozen=True, slots=True)
class Spend:
    """Ledger figures the counters start from: ad group spend on `day` (its local date) and in total."""

    today_micros: int = 0
    total_micros: int = 0
    day: date | None = None
    total_units: int = 0  # billed events in total: a guaranteed booking's delivered impressions at least


class Snapshot:
    """One consistent, read-only picture of what may serve, with its targeting index.

    Ad groups are numbered (ordinals, the index's bitmap positions) best first: by the eCPM they could reach
    with the prior rates. Iterating a candidate bitmap in ascending order therefore meets the strongest bidders
    first, which lets the auction stop early (see ranking.AuctionOrder).
    """

    __slots__ = ("_positions", "accounts", "ad_groups", "ad_spaces", "built_at", "by_ordinal", "fx", "index",
                 "ledger_mark", "ledger_spend", "package_categories", "publishers", "unpaid_slots", "version")

    def __init__(self, *, ad_groups: Iterable[AdGroupSnap], accounts: Iterable[AccountSnap] = (),
                 publishers: Iterable[PublisherSnap] = (), ad_spaces: Iterable[AdSpaceSnap] = (),
                 package_categories: Mapping[str, str] | None = None, ledger_spend: Mapping[int, Spend] | None = None,
                 fx: FxRates | None = None, version: str = "", built_at: datetime | None = None,
                 unpaid_slots: Mapping[int, frozenset[int]] | None = None, ledger_mark: int = 0):
        from adstack.serving.prediction import RateModel
        from adstack.serving.ranking import upper_bound_ecpm

        self.fx = fx or FxRates()
        priors = RateModel()
        ranked = [(-upper_bound_ecpm(g, priors, self.fx) if not g.reserved else 0.0, g.id, g) for g in ad_groups]
        ranked.sort(key=lambda item: (item[0], item[1]))
        self.by_ordinal: tuple[AdGroupSnap, ...] = tuple(g for _, _, g in ranked)
        self.ad_groups: Mapping[int, AdGroupSnap] = MappingProxyType({g.id: g for g in self.by_ordinal})
        self.accounts: Mapping[int, AccountSnap] = MappingProxyType({a.id: a for a in accounts})
        self.publishers: Mapping[int, PublisherSnap] = MappingProxyType({p.id: p for p in publishers})
        self.ad_spaces: Mapping[int, AdSpaceSnap] = MappingProxyType({s.id: s for s in ad_spaces})
        self.package_categories: Mapping[str, str] = MappingProxyType(dict(package_categories or {}))
        self.ledger_spend: Mapping[int, Spend] = MappingProxyType(dict(ledger_spend or {}))
        # The newest ledger entry when the funds and spend were read: refunds after it are not in them.
        self.ledger_mark = ledger_mark
        # CPT ad group -> start seconds of its booked slots whose charge was refused or cut short: not served.
        self.unpaid_slots: Mapping[int, frozenset[int]] = MappingProxyType(dict(unpaid_slots or {}))
        self.version = version
        self.built_at = built_at
        self._positions = {g.id: i for i, g in enumerate(self.by_ordinal)}
        self.index = TargetingIndex(self.by_ordinal)

    def patched(self, *, accounts: Mapping[int, AccountSnap] | None = None,
                ledger_spend: Mapping[int, Spend] | None = None,
                unpaid_slots: Mapping[int, frozenset[int]] | None = None, ledger_mark: int | None = None) -> Snapshot:
        """A copy with some accounts' funds, ad groups' ledger spend or unpaid CPT slots replaced, read as of
        ledger entry `ledger_mark`; the index is shared."""
        copy = object.__new__(Snapshot)
        for name in Snapshot.__slots__:
            object.__setattr__(copy, name, getattr(self, name))
        if accounts:
            copy.accounts = MappingProxyType({**self.accounts, **accounts})
        if ledger_spend:
            copy.ledger_spend = MappingProxyType({**self.ledger_spend, **ledger_spend})
        if unpaid_slots is not None:
            copy.unpaid_slots = MappingProxyType(dict(unpaid_slots))
        if ledger_mark is not None:
            copy.ledger_mark = ledger_mark
        return copy

    def ordinal_of(self, ad_group_id: int) -> int | None:
        return self._positions.get(ad_group_id)

    def __len__(self) -> int:
        return len(self.by_ordinal)

    @classmethod
    def empty(cls) -> Snapshot:
        return cls(ad_groups=())
