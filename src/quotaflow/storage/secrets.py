"""Provider secrets at rest: encrypted with a master key, never shown whole.

The master key comes from ``QUOTAFLOW_MASTER_KEY`` — a Fernet key, or a passphrase, which
is stretched with scrypt and a random salt kept in the store (``master_key_salt``, shared
by replicas like the rest of the store) — else from ``<data>/master.key``, created on first
use with mode 0600 beside the database. Losing the key makes stored secrets unreadable,
by design.

Fingerprints of secrets (to find a key added twice without decrypting) are HMAC-SHA256
keyed by the master key, so a copy of the database alone cannot be checked against
guessed keys.

Stores written before both: secrets encrypted with a passphrase's bare SHA-256, and
fingerprints that were a bare SHA-256 of the secret. They still open (:meth:`SecretBox.open`
says which need it) and :class:`~quotaflow.services.keys.ManagedKeys` rewrites them at start.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from quotaflow.engine.catalog import mask_secret
from quotaflow.errors import StorageUnusable

if TYPE_CHECKING:  # cryptography is imported when a secret is first encrypted or decrypted
    from cryptography.fernet import Fernet

MASTER_KEY_ENV = "QUOTAFLOW_MASTER_KEY"
KEY_FILE = "master.key"
SALT_SETTING = "master_key_salt"  # hex, in the management store
# scrypt cost: ~16 MiB and a few tens of ms, once per start
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1

__all__ = [
    "Passphrase",
    "SecretBox",
    "SecretDecryptError",
    "load_master_key",
    "mask_secret",
    "master_key_origin",
    "secret_hash",
]


class SecretDecryptError(StorageUnusable):
    """A stored secret cannot be decrypted with this master key: a start is refused in one
    line that says which master key was used and how to give the right one."""


class SettingStore(Protocol):
    async def claim_setting(self, name: str, value: str) -> str: ...


@dataclass(frozen=True, slots=True)
class Passphrase:
    """A master key given as a passphrase: stretched once the store's salt is known."""

    text: str = ""

    def __repr__(self) -> str:
        return "Passphrase(***)"


def _new_fernet_key() -> bytes:
    """A fresh Fernet key, made as ``Fernet.generate_key`` makes it (32 random bytes,
    url-safe base64) without importing cryptography."""
    return base64.urlsafe_b64encode(os.urandom(32))


def _fernet_key(text: str) -> bytes | None:
    raw = text.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (ValueError, TypeError):
        pass
    return None


def stretch(passphrase: str, salt: bytes) -> bytes:
    """The Fernet key of a passphrase: scrypt with the store's salt."""
    raw = hashlib.scrypt(
        passphrase.strip().encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
        maxmem=64 * 1024 * 1024, dklen=32,
    )  # fmt: skip
    return base64.urlsafe_b64encode(raw)


def legacy_stretch(passphrase: str) -> bytes:
    """The key older versions made of a passphrase (bare SHA-256): read, never written."""
    return base64.urlsafe_b64encode(hashlib.sha256(passphrase.strip().encode()).digest())


def load_master_key(home: Path | None, env: Mapping[str, str] | None = None) -> bytes | Passphrase:
    """The Fernet key (or passphrase): from the environment, else the key file (created
    0600 if missing).

    ``home=None`` and no environment variable: an ephemeral key (secrets added at runtime
    then do not survive a restart; used by in-process tests)."""
    env = os.environ if env is None else env
    if env.get(MASTER_KEY_ENV):
        text = env[MASTER_KEY_ENV]
        return _fernet_key(text) or Passphrase(text)
    if home is None:
        return _new_fernet_key()
    path = home / KEY_FILE
    if path.exists():
        text = path.read_text(encoding="ascii")
        return _fernet_key(text) or Passphrase(text)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)  # as storage.files makes it
    key = _new_fernet_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def master_key_origin(home: Path | None, env: Mapping[str, str] | None = None) -> str:
    """Where :func:`load_master_key` takes the master key from, for messages: the
    environment variable, the key file's path, or ``""`` (an ephemeral key)."""
    env = os.environ if env is None else env
    if env.get(MASTER_KEY_ENV):
        return MASTER_KEY_ENV
    return "" if home is None else str((home / KEY_FILE).resolve())


def wrong_key(origin: str) -> str:
    """Which master key opens no stored secret, and what to do about it."""
    if origin == MASTER_KEY_ENV:
        return (
            f"the master key in {MASTER_KEY_ENV} is not the one it was encrypted with; set "
            f"{MASTER_KEY_ENV} to the master key the other replicas use (or to the content "
            f"of the {KEY_FILE} file of the data folder the key was added to)"
        )
    used = f" (this start uses {origin})" if origin else ""
    return (
        f"the master key changed{used}; restore the {KEY_FILE} file this data folder was "
        f"created with, or set {MASTER_KEY_ENV} to the master key the other replicas use"
    )


def secret_hash(secret: str) -> str:
    """The bare SHA-256 fingerprint older versions stored (recognised to migrate it)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _check_fernet_key(key: bytes) -> None:
    # Checked as Fernet checks it (same error), without importing cryptography.
    try:
        raw = base64.urlsafe_b64decode(key)
    except binascii.Error as exc:
        raise ValueError("Fernet key must be 32 url-safe base64-encoded bytes.") from exc
    if len(raw) != 32:
        raise ValueError("Fernet key must be 32 url-safe base64-encoded bytes.")


class SecretBox:
    """Encrypts, decrypts and fingerprints secrets with one master key.

    A passphrase is stretched by :meth:`unlock` (the salt lives in the store); a Fernet
    key is ready at once. Cryptography is imported on first use: most starts never
    encrypt or decrypt anything, and it takes a while to import."""

    def __init__(self, master_key: bytes | Passphrase, origin: str = "") -> None:
        """``origin``: where the master key came from (:func:`master_key_origin`), named
        when it opens no stored secret."""
        self.origin = origin
        self._passphrase: str | None = None
        self._key: bytes | None = None
        self._legacy: bytes | None = None
        if isinstance(master_key, Passphrase):
            self._passphrase = master_key.text
        else:
            _check_fernet_key(master_key)
            self._key = master_key
        self._fernets: list[Fernet] | None = None

    async def unlock(self, store: SettingStore) -> None:
        """Stretch a passphrase with the store's salt (claimed now if the store has none)."""
        if self._passphrase is None or self._key is not None:
            return
        salt = await store.claim_setting(SALT_SETTING, os.urandom(16).hex())
        self._key = stretch(self._passphrase, bytes.fromhex(salt))
        self._legacy = legacy_stretch(self._passphrase)

    def _ready_key(self) -> bytes:
        if self._key is None:
            raise RuntimeError(
                "the master key is a passphrase: unlock the box with the store first"
            )
        return self._key

    def _all(self) -> list[Fernet]:
        if self._fernets is None:
            from cryptography.fernet import Fernet

            keys = [self._ready_key(), *([self._legacy] if self._legacy else [])]
            self._fernets = [Fernet(k) for k in keys]
        return self._fernets

    def encrypt(self, secret: str) -> bytes:
        return self._all()[0].encrypt(secret.encode())

    def open(self, token: bytes, name: str = "a stored secret") -> tuple[str, bool]:
        """The secret, and whether it was sealed by an older version (rewrite it).

        ``name``: what the secret is (e.g. ``the stored key 'openai-2'``), for the error."""
        from cryptography.fernet import InvalidToken

        for i, f in enumerate(self._all()):
            try:
                return f.decrypt(token).decode(), i > 0
            except InvalidToken:
                continue
        raise SecretDecryptError(f"{name} cannot be decrypted: {wrong_key(self.origin)}")

    def decrypt(self, token: bytes) -> str:
        return self.open(token)[0]

    def fingerprint(self, secret: str) -> str:
        """HMAC-SHA256 of the secret, keyed by (a derivation of) the master key."""
        key = hashlib.sha256(b"quotaflow fingerprint\0" + self._ready_key()).digest()
        return hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()
