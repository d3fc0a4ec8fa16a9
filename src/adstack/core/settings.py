"""Process settings, read from the environment with the ADSTACK_ prefix."""

from __future__ import annotations

import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adstack.core.private_files import create_private


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ADSTACK_", extra="ignore")

    data_dir: Path = Field(default=Path("./adstack-data"), description="Where SQLite, events and uploads live.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; SQLite in data_dir when unset.")
    secret_key: str | None = Field(default=None, description="HMAC and encryption key; persisted in data_dir.")
    redis_url: str | None = Field(default=None, description="Shared counters for several serving processes.")
    redis_prefix: str = Field(default="adstack:", pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
                              description="Begins every Redis key this deployment writes; one per deployment "
                                          "sharing a Redis database.")
    clickhouse_url: str | None = Field(default=None, description="ClickHouse server; embedded chDB when unset.")
    public_base_url: str = "http://127.0.0.1:8000"
    adjust_api_url: str = Field(default="https://automate.adjust.com", description="Adjust Report Service base URL.")
    appsflyer_api_url: str = Field(default="https://hq1.appsflyer.com",
                                   description="AppsFlyer Pull API (aggregate data) base URL.")
    connector_pull_interval_s: int = Field(default=3600, description="Scheduled partner pulls; 0 turns them off.")
    # Special-purpose networks (private, loopback, ...) outbound requests may reach anyway, per feature: allowing
    # a network to one feature does not open it to the others (core/outbound.py).
    outbound_allowed_networks: str = Field(
        default="", description="Comma-separated CIDRs audience imports (URL, WebHDFS) and partner connectors may "
                                "reach although special-purpose (e.g. an HDFS cluster on 10.0.0.0/8), where their "
                                "own setting is unset; empty allows none. Never used by webhooks.")
    import_allowed_networks: str | None = Field(
        default=None, description="Audience imports' own list (URL, WebHDFS); unset: outbound_allowed_networks.")
    connector_allowed_networks: str | None = Field(
        default=None, description="Partner connectors' own list; unset: outbound_allowed_networks.")
    webhook_allowed_networks: str = Field(
        default="", description="CIDRs webhook receivers may be on although special-purpose; empty (the default) "
                                "allows none. Its own: a webhook's attempts show its receiver's status and timing.")
    url_imports_per_account: int = Field(
        default=2, ge=1, description="URL imports of audiences one account may run at once in a serving process; "
                                     "more are answered 429.")
    token_ttl_hours: int = 24 * 7
    max_upload_bytes: int = 64 * 1024 * 1024
    max_document_bytes: int = 10 * 1024 * 1024
    # A refused registration keeps its documents for an hour so they need not be chosen again; anyone may post
    # the form, so what is kept is capped per client IP and in all (past a cap the form asks for the file again).
    held_upload_files_per_visitor: int = Field(default=4, ge=0, description="Documents kept for one client IP.")
    held_upload_bytes_per_visitor: int = Field(default=20 * 1024 * 1024, ge=0,
                                               description="Bytes of documents kept for one client IP.")
    held_upload_files_total: int = Field(default=1000, ge=0, description="Documents kept for all visitors.")
    held_upload_bytes_total: int = Field(default=512 * 1024 * 1024, ge=0,
                                         description="Bytes of documents kept for all visitors.")
    max_form_bytes: int = Field(default=1024 * 1024, ge=1024, description="A form or multipart body on a route "
                                                                          "that takes no file.")
    body_deadline_s: float = Field(default=120.0, gt=0, description="A request body not received in full by then "
                                                                    "is refused with 408.")
    # One number for both: each request thread can always get a connection, so none waits on the pool.
    db_pool_size: int = Field(default=20, ge=1, le=500, description="Threads serving requests, and as many pooled "
                                                                    "database connections (plus a few for "
                                                                    "background work).")
    db_pool_timeout_s: float = Field(default=5.0, gt=0, description="A request waiting longer for a database "
                                                                    "connection is answered 503.")
    unsigned_postback_hold_seconds: int = Field(
        default=120, ge=0, le=86_400,
        description="How long a postback without the app's signature (the guide's bare AppMetrica URL) waits "
                    "before attribution, so a signed copy sent alongside it is the one attributed and charged.")
    rejected_postback_rows_per_minute: int = Field(
        default=600, ge=0, description="Refused postbacks kept per minute; beyond it they are only counted.")
    auction_type: Literal["second_price", "first_price"] = "second_price"
    # Platform minimum clearing prices in USD micros, per click, per 1,000 impressions and per action.
    min_price_cpc_usd_micros: int = Field(default=10_000, ge=0)
    min_price_cpm_usd_micros: int = Field(default=100_000, ge=0)
    min_price_cpa_usd_micros: int = Field(default=100_000, ge=0)
    environment: Literal["production", "development", "test"] = "production"
    # The event pipeline (see docs/deployment.md).
    nats_url: str | None = Field(default=None, description="NATS JetStream as the event log; local journal when unset.")
    nats_stream: str = Field(default="ADSTACK_EVENTS", pattern=r"^[A-Za-z0-9_-]{1,64}$",
                             description="The JetStream stream; one per deployment.")
    # Unset: the default when the stream is created, and an existing stream keeps what it has (an operator's
    # change through the JetStream API stands); set: applied to the stream at every start.
    nats_max_age_seconds: int | None = Field(
        default=None, ge=3600, description="How long the stream keeps a record, applied or not (7 days when "
                                           "unset at creation); longer than any consumer may lag.")
    nats_max_bytes: int | None = Field(
        default=None, ge=1024 * 1024, description="The stream's size limit; once reached, appends are refused "
                                                  "(503) until records age out. No limit when unset at creation.")
    nats_replicas: int | None = Field(default=None, ge=1, le=5, description="Copies of the stream in a JetStream "
                                                                            "cluster (1 when unset at creation).")
    nats_ack_wait_seconds: float = Field(
        default=30.0, ge=1, le=3600, description="How long a consumer's batch stays its own before JetStream hands "
                                                 "it to another consumer process (or to the same one restarted): "
                                                 "longer than a batch takes to apply.")
    pipeline_in_process: bool = Field(default=True, description="Run the pipeline's consumers in the serving process.")
    pipeline_batch_events: int = Field(default=5_000, ge=1, le=100_000)
    sdk_reservation_seconds: int = Field(default=30 * 60, ge=1, description="An unshown SDK ad's budget hold.")
    exchange_reservation_seconds: int = Field(default=5 * 60, ge=1, description="An unanswered bid's budget hold.")
    # The OpenRTB bidder (serving/openrtb): see docs and the module docstrings.
    openrtb_min_tmax_ms: int = Field(default=30, ge=0, le=10_000,
                                     description="Below this tmax a bid request is answered 204 at once.")
    openrtb_first_price_margin_percent: int = Field(
        default=20, ge=0, le=99, description="First-price exchanges are bid the slot's value less this margin.")
    openrtb_tcf_vendor_id: int | None = Field(
        default=None, ge=1, le=65_535, description="Our IAB TCF vendor id; unset: under GDPR no consent is ours.")
    bench_routes: bool = Field(default=False, description="Mount the trivial baseline route benchmarks use.")
    metrics_token: str | None = Field(default=None, description="Bearer token for /metrics; loopback only if unset.")
    log_min_free_bytes: int = Field(default=64 * 1024 * 1024, ge=0,
                                    description="Tracking answers 503 below this much free disk for the log.")
    # General invalid traffic (pipeline/ivt.py): filtered before billing, attribution and predictions.
    ivt_enabled: bool | None = Field(
        default=None, description="Filter invalid traffic; unset means on, except environment=test, whose "
                                  "scripted fixtures click without pixels.")
    ivt_min_click_ms: int = Field(default=1_000, ge=0, description="A click sooner after its impression is invalid.")
    ivt_click_burst_limit: int = Field(default=5, ge=1, description="Most clicks on one ad group per window from "
                                                                    "one device or one IP address.")
    ivt_click_burst_seconds: int = Field(default=60, ge=1)
    ivt_datacenter_networks: str = Field(default="", description="Data-center CIDRs, comma-separated.")
    ivt_datacenter_file: Path | None = Field(default=None, description="A file of data-center CIDRs, one a line.")
    ivt_verdict_retention_hours: int = Field(default=72, ge=1, description="How long verdicts are kept for "
                                                                          "replays and click checks.")
    invalid_traffic_rows_per_minute: int = Field(
        default=600, ge=0, description="Invalid-traffic rows kept per minute; beyond it they are only counted.")
    # Retention (retention/service.py): the tables that grow with traffic keep their rows this long. Reports read
    # the event store and the ledger, which keep everything.
    touchpoint_retention_days: int = Field(
        default=90, ge=31, description="Clicks kept for attribution, counted back from now: past the longest "
                                       "click lookback an app may set (30 days), with room for postbacks that "
                                       "arrive late. Impressions go sooner: impression_touchpoint_retention_days.")
    impression_touchpoint_retention_days: int = Field(
        default=30, ge=8, description="Impressions kept for view-through attribution: past the longest view-through "
                                      "window an app may set (7 days), with room for postbacks that arrive late; "
                                      "at most touchpoint_retention_days.")
    postback_retention_days: int = Field(
        default=180, ge=30, description="Processed postbacks kept as received (a partner's retry is recognised "
                                        "by them); pending ones are kept until attributed.")
    rejected_postback_retention_days: int = Field(default=14, ge=1, description="Refused postbacks kept for "
                                                                                "inspection.")
    invalid_traffic_retention_days: int = Field(default=90, ge=1, description="Invalid-traffic records and "
                                                                              "their per-minute counts kept.")
    delivery_retention_days: int = Field(
        default=90, ge=1, description="Webhook deliveries (with their attempts) and mail sent or given up on are "
                                      "kept this long; pending ones until delivered or given up.")
    # HTTPS: Strict-Transport-Security when the request came over https.
    hsts: bool = Field(default=False, description="Send HSTS on every answer (the service is only reached over "
                                                  "https).")
    hsts_max_age: int = Field(default=31_536_000, ge=0)
    trusted_proxies: str = Field(default="", description="CIDRs of proxies whose X-Forwarded-Proto is believed.")

    # Accounts: e-mail verification, outgoing mail and sign-in protection.
    require_email_verification: bool | None = Field(
        default=None, description="An account is submitted for review only once its e-mail is verified; "
                                  "unset means true in production, false in development and test.")
    smtp_host: str | None = Field(default=None, description="SMTP server; unset writes mail to data_dir/outbox.")
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "adstack <no-reply@localhost>"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    smtp_ssl: bool = Field(default=False, description="Implicit TLS from the first byte (port 465), instead of "
                                                      "plain SMTP or STARTTLS.")
    notification_interval_s: float = Field(default=2.0, gt=0, description="How often the notification worker "
                                                                          "looks for due e-mail and webhooks.")
    notification_scan_interval_s: float = Field(default=60.0, gt=0, description="How often low balances, spent "
                                                                               "budgets and top-ups are looked for.")
    webhook_retry_base_s: float = Field(default=30.0, gt=0, description="First retry delay; doubles per attempt.")
    webhook_retry_max_s: float = Field(default=6 * 3600.0, gt=0, description="Longest delay between retries.")
    webhook_max_attempts: int = Field(default=10, ge=1, le=50, description="Tries before a delivery is failed.")
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="A receiver's whole answer, connect to end.")
    email_token_ttl_hours: int = Field(default=24, ge=1, description="Verification and reset links expire.")
    # `limits` notation, several separated by ";". Failed sign-ins count per IP and per e-mail address.
    rate_limit_login_ip: str = "30/minute;300/hour"
    rate_limit_login_account: str = "10/15minutes;30/day"
    rate_limit_register_ip: str = "30/hour;200/day"
    rate_limit_register_account: str = "3/hour"
    rate_limit_password_reset_ip: str = "10/hour"
    rate_limit_password_reset_account: str = "3/hour"

    @model_validator(mode="after")
    def _impressions_go_no_later_than_clicks(self) -> Settings:
        if self.impression_touchpoint_retention_days > self.touchpoint_retention_days:
            raise ValueError(
                f"impression_touchpoint_retention_days ({self.impression_touchpoint_retention_days}) must be at most "
                f"touchpoint_retention_days ({self.touchpoint_retention_days}): touches of every kind go after that")
        return self

    @property
    def email_verification_required(self) -> bool:
        if self.require_email_verification is None:
            return self.environment == "production"
        return self.require_email_verification

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'adstack.db').resolve()}"

    @cached_property
    def resolved_secret_key(self) -> bytes:
        """The secret used to sign click ids and encrypt stored credentials.

        Generated once per data dir so restarts keep validating old tracking links.
        """
        if self.secret_key:
            return self.secret_key.encode()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key_file = self.data_dir / "secret.key"
        if not key_file.exists():
            # Written aside, then linked into place: a worker starting beside another never reads a key file that
            # exists but is still empty (it would sign and verify with a different key).
            draft = self.data_dir / f".secret.key.{secrets.token_hex(8)}"
            try:
                with create_private(draft) as out:
                    out.write(secrets.token_urlsafe(48).encode())
                os.link(draft, key_file)
            except FileExistsError:
                pass  # made just now by another process: every process reads the one that exists
            finally:
                draft.unlink(missing_ok=True)
        return key_file.read_text().strip().encode()

    @property
    def ivt_active(self) -> bool:
        return self.ivt_enabled if self.ivt_enabled is not None else self.environment != "test"

    @property
    def media_dir(self) -> Path:
        path = self.data_dir / "media"
        path.mkdir(parents=True, exist_ok=True)
        return path


_settings: Settings | None = None


def get_settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = Settings()
    return _settings


def set_settings(settings: Settings) -> None:
    global _settings
    _settings = settings
