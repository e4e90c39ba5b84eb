"""Keys at rest: a passphrase is stretched with scrypt and a salt, fingerprints are keyed,
and a store written by an older version (bare SHA-256 for both) is rewritten at start.

Through the real server and its SQLite file.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken

from quotaflow.storage.secrets import SALT_SETTING, legacy_stretch
from tests.e2e_helpers import fake_upstream, served

pytestmark = pytest.mark.e2e

PASSPHRASE = "correct horse battery staple"
SECRET = "sk-at-rest-SECRET-0001-abcdef"
ENV = {
    "QUOTAFLOW_MASTER_KEY": PASSPHRASE,
    "QUOTAFLOW_ADMIN_TOKEN": "qfadm-at-rest-admin-token-0001",
}
ADMIN = ENV["QUOTAFLOW_ADMIN_TOKEN"]


def row(home: Path) -> tuple[bytes, str]:
    db = sqlite3.connect(home / "quotaflow.db")
    try:
        enc, digest = db.execute("SELECT secret_enc, secret_hash FROM managed_keys").fetchone()
        return bytes(enc), str(digest)
    finally:
        db.close()


def assert_current(home: Path) -> None:
    enc, digest = row(home)
    assert digest != hashlib.sha256(SECRET.encode()).hexdigest()  # keyed, not bare
    with pytest.raises(InvalidToken):  # sealed with the stretched key, not the bare hash
        Fernet(legacy_stretch(PASSPHRASE)).decrypt(enc)
    db = sqlite3.connect(home / "quotaflow.db")
    salt = db.execute("SELECT value FROM settings WHERE name=?", (SALT_SETTING,)).fetchone()[0]
    db.close()
    assert len(bytes.fromhex(salt)) == 16


def test_a_passphrase_is_stretched_and_an_old_store_is_migrated(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with fake_upstream("openai") as fake:
        cfg = f"providers: [{{name: openai, base_url: {fake.url}/v1}}]\n"
        with served(cfg, home, env=ENV) as s:
            status, body = s.call("POST", "/api/add_key", {"provider": "openai", "api_key": SECRET, "quota_total": 1000}, token=ADMIN)  # fmt: skip
            assert status == 200 and body["created"], body
        assert_current(home)
        # What an older version wrote: the passphrase's bare SHA-256 as the key, and a
        # bare SHA-256 of the secret as its fingerprint.
        db = sqlite3.connect(home / "quotaflow.db")
        db.execute(
            "UPDATE managed_keys SET secret_enc=?, secret_hash=?",
            (Fernet(legacy_stretch(PASSPHRASE)).encrypt(SECRET.encode()), hashlib.sha256(SECRET.encode()).hexdigest()),
        )  # fmt: skip
        db.commit()
        db.close()
        with served(cfg, home, env=ENV) as s:
            key_id = body["key_id"]
            assert s.call("POST", f"/api/keys/{key_id}/reveal", token=ADMIN)[1]["api_key"] == SECRET
            status, again = s.call("POST", "/api/add_key", {"provider": "openai", "api_key": SECRET, "quota_total": 2000}, token=ADMIN)  # fmt: skip
            assert status == 200 and again["created"] is False and again["key_id"] == key_id
        assert_current(home)
