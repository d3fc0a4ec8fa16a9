"""Passwords (argon2), opaque bearer tokens, HMAC signing and at-rest encryption."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import secrets
import threading

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet, InvalidToken


@functools.cache
def _hasher() -> PasswordHasher:
    """RFC 9106's low-memory argon2id profile. The test suite sets ADSTACK_ARGON2_PROFILE=CHEAPEST so the
    thousands of sign-ups it makes stay fast; hashes stay argon2id, with tiny costs."""
    name = os.environ.get("ADSTACK_ARGON2_PROFILE", "RFC_9106_LOW_MEMORY")
    return PasswordHasher.from_parameters(getattr(profiles, name, profiles.RFC_9106_LOW_MEMORY))


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_token(prefix: str) -> str:
    """An unguessable token; the prefix tells a session token from an API key at a glance."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


class _RandomPool:
    """The operating system's random bytes, drawn 4 KB at a time. Serving mints ids on every request, and here a
    system call costs more than the id; the bytes are the same CSPRNG's. A forked child starts with an empty pool,
    so no two processes ever hand out the same bytes."""

    SIZE = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._position = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._pool, self._position = b"", 0

    def take(self, size: int) -> bytes:
        with self._lock:
            start = self._position
            if start + size > len(self._pool):
                self._pool, start = os.urandom(max(self.SIZE, size)), 0
            self._position = start + size
            return self._pool[start:start + size]


_random_pool = _RandomPool()


def random_token(size: int) -> str:
    """`secrets.token_urlsafe(size)`, from the pooled random bytes: for ids minted on every ad request."""
    return base64.urlsafe_b64encode(_random_pool.take(size)).rstrip(b"=").decode()


def random_hex(size: int) -> str:
    """`secrets.token_hex(size)`, from the pooled random bytes."""
    return _random_pool.take(size).hex()


def token_digest(token: str) -> str:
    """Tokens are stored as SHA-256 digests; a stolen database reveals no usable token."""
    return hashlib.sha256(token.encode()).hexdigest()


@functools.lru_cache(maxsize=64)
def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 from a copy of the key's prepared state. Tracking and postbacks sign on every request, and the
    one-shot `hmac.digest` both sets the key up each time and releases the GIL around a microsecond of work: the
    request thread then queues for the GIL behind the process's other threads."""
    mac = _keyed(key).copy()
    mac.update(message)
    return mac.digest()


def hmac_sign(key: bytes, message: bytes, size: int = 16) -> str:
    return base64.urlsafe_b64encode(hmac_sha256(key, message)[:size]).rstrip(b"=").decode()


def signature_matches(expected: str, signature: str) -> bool:
    """Constant-time comparison of a signature we made with one we were sent."""
    # compare_digest refuses non-ASCII text with a TypeError; no signature we make has any.
    return signature.isascii() and hmac.compare_digest(expected, signature)


def hmac_verify(key: bytes, message: bytes, signature: str, size: int = 16) -> bool:
    return signature_matches(hmac_sign(key, message, size), signature)


@functools.lru_cache(maxsize=64)
def derive_key(secret: bytes, purpose: str) -> bytes:
    """Separate keys per purpose so a leak of one use does not compromise another. Cached: every tracking
    request and every record a consumer decodes derives the same few keys."""
    return hmac.new(secret, purpose.encode(), hashlib.sha256).digest()


class Encryptor:
    """Fernet (AES-128-CBC + HMAC-SHA256) for secrets stored in the database, such as partner API tokens."""

    def __init__(self, secret: bytes):
        self._fernet = Fernet(base64.urlsafe_b64encode(derive_key(secret, "at-rest-encryption")))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("ciphertext was not produced with this key") from exc


def mask_secret(value: str, visible: int = 4) -> str:
    if len(value) <= visible:
        return "*" * len(value)
    return "*" * (len(value) - visible) + value[-visible:]
