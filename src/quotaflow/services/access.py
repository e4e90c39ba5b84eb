"""Access to the admin surface: the admin token at rest, its claim in a shared store, and
which hosts count as local (trust-local mode binds to loopback only).

The token in force is, in order: ``QUOTAFLOW_ADMIN_TOKEN``; the file ``--admin-token-file``
names; the one whose SHA-256 is kept in ``<data>/admin_token.sha256``. Without any, the
first start creates one and leaves it for its operator in ``<data>/admin_token`` (0600,
like the master key beside it) — never in the log. ``quotaflow admin-token rotate``
replaces it and prints the new one once. With a store shared by replicas the first replica
to start stores its hash and every other one uses that.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from quotaflow.storage.files import private_folder
from quotaflow.storage.management import ManagementStore

ADMIN_PREFIX = "qfadm-"
ADMIN_HASH_FILE = "admin_token.sha256"
ADMIN_TOKEN_FILE = "admin_token"  # a created token, for its operator to read (0600)
ADMIN_TOKEN_ENV = "QUOTAFLOW_ADMIN_TOKEN"
MIN_TOKEN_CHARS = 16  # after the prefix
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


class AdminTokenError(ValueError):
    """A chosen admin token that cannot be used (the message says why)."""


def new_admin_token() -> str:
    return ADMIN_PREFIX + secrets.token_urlsafe(32)


def chosen_admin_token(env: Mapping[str, str], token_file: Path | None) -> str | None:
    """The token the operator chose (environment first, then the file), validated."""
    token = env.get(ADMIN_TOKEN_ENV, "").strip() or None
    source = ADMIN_TOKEN_ENV
    if token is None and token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise AdminTokenError(
                f"cannot read the admin token file {token_file}: {exc.strerror}"
            ) from None
        source = str(token_file)
    if token is None:
        return None
    if (
        not token.startswith(ADMIN_PREFIX)
        or len(token) < len(ADMIN_PREFIX) + MIN_TOKEN_CHARS
        or not token.isprintable()
        or " " in token
    ):
        raise AdminTokenError(
            f"the admin token from {source} must be '{ADMIN_PREFIX}' followed by at least "
            f"{MIN_TOKEN_CHARS} characters without spaces (make one with 'quotaflow admin-token rotate')"
        )
    return token


def write_hash(home: Path, digest: str) -> None:
    """Replace ``<data>/admin_token.sha256`` atomically (0600)."""
    private_folder(home)
    tmp = home / (ADMIN_HASH_FILE + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(digest + "\n")
    os.replace(tmp, home / ADMIN_HASH_FILE)


def leave_token(home: Path, token: str) -> Path:
    """Write a created token to ``<data>/admin_token`` (0600) for its operator."""
    path = home / ADMIN_TOKEN_FILE
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    return path


def rotate_admin_token(home: Path) -> str:
    """A new admin token for the data folder: its hash replaces the old one, and the
    token left by the first start (now void) is removed. Returns the token (show it once)."""
    token = new_admin_token()
    write_hash(home, token_hash(token))
    (home / ADMIN_TOKEN_FILE).unlink(missing_ok=True)
    return token


def ensure_admin_token(home: Path | None) -> tuple[str, str | None]:
    """The admin token's hash, and the token itself when it was just created (print it once).

    ``home=None``: a fresh token for this process only (in-process tests)."""
    if home is not None:
        path = home / ADMIN_HASH_FILE
        if path.exists():
            return path.read_text(encoding="ascii").strip(), None
    token = new_admin_token()
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
