"""Rate limits on sign-in, registration and password reset, per client IP and per e-mail address.

Counters live in Redis when `ADSTACK_REDIS_URL` is set, so every serving process shares them; otherwise in
the process's memory (one process, or limits that are per process). While Redis does not answer, attempts
cannot be counted: they are refused as briefly unavailable (`Unavailable`, 503) rather than let through
unlimited.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from adstack.core.errors import Unavailable
from adstack.core.settings import Settings

NAMESPACE = "adstack-auth"
# A Redis that does not answer holds a sign-in this long at most, then it is refused.
REDIS_TIMEOUT_S = 1.0
RETRY_AFTER_S = 5


@dataclass(frozen=True)
class Refused:
    """A limit was reached: retry after this many seconds."""

    retry_after: int
    limit: str


class AuthLimiter:
    def __init__(self, settings: Settings):
        self._storage: Storage = MemoryStorage()
        if settings.redis_url:
            # Under the deployment's prefix, not the library's shared "LIMITS": `reset` deletes every key under it.
            self._storage = RedisStorage(settings.redis_url, key_prefix=f"{settings.redis_prefix}limits",
                                         wrap_exceptions=True, socket_timeout=REDIS_TIMEOUT_S,
                                         socket_connect_timeout=REDIS_TIMEOUT_S)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._rules: dict[str, list[RateLimitItem]] = {
            "login_ip": parse_many(settings.rate_limit_login_ip),
            "login_account": parse_many(settings.rate_limit_login_account),
            "register_ip": parse_many(settings.rate_limit_register_ip),
            "register_account": parse_many(settings.rate_limit_register_account),
            "reset_ip": parse_many(settings.rate_limit_password_reset_ip),
            "reset_account": parse_many(settings.rate_limit_password_reset_account),
        }

    def _retry_after(self, item: RateLimitItem, rule: str, key: str) -> int:
        stats = self._limiter.get_window_stats(item, NAMESPACE, rule, key)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def check(self, *pairs: tuple[str, str]) -> Refused | None:
        """Whether another attempt is allowed, without counting one (sign-in counts only failures)."""
        try:
            for rule, key in pairs:
                for item in self._rules[rule]:
                    if not self._limiter.test(item, NAMESPACE, rule, key):
                        return Refused(self._retry_after(item, rule, key), str(item))
        except StorageError as exc:
            raise _unavailable() from exc
        return None

    def hit(self, *pairs: tuple[str, str]) -> Refused | None:
        """Count one attempt against every limit named; refused when any of them is already used up."""
        refused: Refused | None = None
        try:
            for rule, key in pairs:
                for item in self._rules[rule]:
                    if not self._limiter.hit(item, NAMESPACE, rule, key) and refused is None:
                        refused = Refused(self._retry_after(item, rule, key), str(item))
        except StorageError as exc:
            raise _unavailable() from exc
        return refused

    def reset(self) -> None:
        self._storage.reset()


def _unavailable() -> Unavailable:
    return Unavailable("attempts cannot be counted now (the rate limits' store does not answer); retry",
                       retry_after=RETRY_AFTER_S)


def limiter_of(state: Any) -> AuthLimiter:
    """The application's limiter (made at start-up by accounts.api.install; made here if it was not)."""
    limiter: AuthLimiter | None = getattr(state, "auth_limiter", None)
    if limiter is None:
        limiter = state.auth_limiter = AuthLimiter(state.settings)
    return limiter


def account_key(email: str) -> str:
    return email.strip().lower()
