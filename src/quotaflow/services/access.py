"""Access to the admin surface: the admin token at rest, its claim in a shared store, and
which hosts count as local (trust-local mode binds to loopback only).

The token is created on first start, printed once, and only its SHA-256 is kept
(``<data>/admin_token.sha256``). With a store shared by replicas the first replica to start
stores its hash and every other one uses that.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import secrets
from pathlib import Path

from quotaflow.storage.files import private_folder
from quotaflow.storage.management import ManagementStore

ADMIN_PREFIX = "qfadm-"
ADMIN_HASH_FILE = "admin_token.sha256"
ADMIN_SETTING = "admin_token_sha256"  # the shared store's admin token hash (scale-out)


@functools.lru_cache(maxsize=256)
def is_loopback(host: str) -> bool:
    """``localhost``, ``127.x.x.x`` or ``::1`` (cached: it runs on every request)."""
    h = host.strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ensure_admin_token(home: Path | None) -> tuple[str, str | None]:
    """The admin token's hash, and the token itself when it was just created (print it once).

    ``home=None``: a fresh token for this process only (in-process tests)."""
    if home is not None:
        path = home / ADMIN_HASH_FILE
        if path.exists():
            return path.read_text(encoding="ascii").strip(), None
    token = ADMIN_PREFIX + secrets.token_urlsafe(32)
    digest = token_hash(token)
    if home is not None:
        private_folder(home)
        fd = os.open(home / ADMIN_HASH_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(digest + "\n")
    return digest, token


def candidate_admin_token(home: Path | None) -> tuple[str, str | None]:
    """The hash this replica offers as the shared admin token: the one of its data folder
    if it has one (a deployment moving to a shared store keeps a token it knows), else a
    fresh token's (returned too, to print once if it is the one stored)."""
    path = None if home is None else home / ADMIN_HASH_FILE
    if path is not None and path.exists():
        return path.read_text(encoding="ascii").strip(), None
    return ensure_admin_token(None)


async def claim_admin_token(
    store: ManagementStore, digest: str, token: str | None
) -> tuple[str, str | None]:
    """Atomically store this replica's candidate hash unless one is stored; returns the
    hash in force and the token to print (only by the replica whose hash was stored)."""
    stored = await store.claim_setting(ADMIN_SETTING, digest)
    return (digest, token) if stored == digest else (stored, None)
