"""Provider secrets at rest: encrypted with a master key, never shown whole.

The master key comes from ``QUOTAFLOW_MASTER_KEY`` (a Fernet key, or any passphrase, which
is stretched with SHA-256), else from ``<data>/master.key``, created on first use with mode
0600 beside the database. Losing the key file makes stored secrets unreadable, by design.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from quotaflow.engine.catalog import mask_secret

if TYPE_CHECKING:  # cryptography is imported when a secret is first encrypted or decrypted
    from cryptography.fernet import Fernet

MASTER_KEY_ENV = "QUOTAFLOW_MASTER_KEY"
KEY_FILE = "master.key"

__all__ = ["SecretBox", "load_master_key", "mask_secret", "secret_hash"]


class SecretDecryptError(Exception):
    """A stored secret cannot be decrypted with this master key."""


def _new_fernet_key() -> bytes:
    """A fresh Fernet key, made as ``Fernet.generate_key`` makes it (32 random bytes,
    url-safe base64) without importing cryptography."""
    return base64.urlsafe_b64encode(os.urandom(32))


def _as_fernet_key(text: str) -> bytes:
    raw = text.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (ValueError, TypeError):
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


def load_master_key(home: Path | None, env: Mapping[str, str] | None = None) -> bytes:
    """The Fernet key: from the environment, else the key file (created 0600 if missing).

    ``home=None`` and no environment variable: an ephemeral key (secrets added at runtime
    then do not survive a restart; used by in-process tests)."""
    env = os.environ if env is None else env
    if env.get(MASTER_KEY_ENV):
        return _as_fernet_key(env[MASTER_KEY_ENV])
    if home is None:
        return _new_fernet_key()
    path = home / KEY_FILE
    if path.exists():
        return _as_fernet_key(path.read_text(encoding="ascii"))
    home.mkdir(parents=True, exist_ok=True, mode=0o700)  # as storage.files makes it
    key = _new_fernet_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def secret_hash(secret: str) -> str:
    """A stable fingerprint of a secret (finds duplicates without decrypting)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class SecretBox:
    """Encrypts and decrypts secrets with one master key."""

    def __init__(self, master_key: bytes) -> None:
        # Checked now as Fernet checks it (same error), built on first use: most starts
        # never encrypt or decrypt anything, and cryptography takes a while to import.
        try:
            raw = base64.urlsafe_b64decode(master_key)
        except binascii.Error as exc:
            raise ValueError("Fernet key must be 32 url-safe base64-encoded bytes.") from exc
        if len(raw) != 32:
            raise ValueError("Fernet key must be 32 url-safe base64-encoded bytes.")
        self._key = master_key
        self._fernet_obj: Fernet | None = None

    @property
    def _fernet(self) -> Fernet:
        if self._fernet_obj is None:
            from cryptography.fernet import Fernet

            self._fernet_obj = Fernet(self._key)
        return self._fernet_obj

    def encrypt(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def decrypt(self, token: bytes) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise SecretDecryptError(
                "a stored secret cannot be decrypted: the master key changed "
                f"(set {MASTER_KEY_ENV} or restore {KEY_FILE})"
            ) from None
