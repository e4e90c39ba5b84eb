"""Secrets at rest: Fernet with a master key from the environment or a 0600 key file."""

from __future__ import annotations

from pathlib import Path

import pytest

from quotaflow.storage.secrets import (
    KEY_FILE,
    MASTER_KEY_ENV,
    SALT_SETTING,
    SecretBox,
    SecretDecryptError,
    legacy_stretch,
    load_master_key,
    secret_hash,
    stretch,
)

SECRET = "sk-ant-api03-very-secret-x9Qf"


def test_a_key_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    key = load_master_key(tmp_path, env={})
    path = tmp_path / KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    token = SecretBox(key).encrypt(SECRET)
    assert SECRET.encode() not in token
    assert SecretBox(load_master_key(tmp_path, env={})).decrypt(token) == SECRET


class Settings:
    """A store's settings, as the management store keeps them."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def claim_setting(self, name: str, value: str) -> str:
        return self.values.setdefault(name, value)


async def unlocked(env: dict[str, str], store: Settings, home: Path | None = None) -> SecretBox:
    box = SecretBox(load_master_key(home, env=env))
    await box.unlock(store)
    return box


async def test_the_environment_wins_and_a_passphrase_is_stretched_with_a_salt(tmp_path: Path) -> None:  # fmt: skip
    env = {MASTER_KEY_ENV: "correct horse battery staple"}
    store = Settings()
    token = (await unlocked(env, store, tmp_path)).encrypt(SECRET)
    assert not (tmp_path / KEY_FILE).exists()
    assert len(bytes.fromhex(store.values[SALT_SETTING])) == 16
    assert (await unlocked(env, store)).decrypt(token) == SECRET
    assert stretch(env[MASTER_KEY_ENV], b"another salt") != stretch(env[MASTER_KEY_ENV], bytes.fromhex(store.values[SALT_SETTING]))  # fmt: skip
    with pytest.raises(SecretDecryptError):  # the bare SHA-256 of the passphrase opens nothing new
        SecretBox(legacy_stretch(env[MASTER_KEY_ENV])).decrypt(token)


async def test_a_secret_sealed_by_an_older_version_opens_and_says_so() -> None:
    env = {MASTER_KEY_ENV: "correct horse battery staple"}
    old = SecretBox(legacy_stretch(env[MASTER_KEY_ENV])).encrypt(SECRET)
    box = await unlocked(env, Settings())
    assert box.open(old) == (SECRET, True)
    assert box.open(box.encrypt(SECRET)) == (SECRET, False)


async def test_fingerprints_are_keyed_by_the_master_key() -> None:
    a = SecretBox(load_master_key(None, env={}))
    b = SecretBox(load_master_key(None, env={}))
    assert a.fingerprint(SECRET) == a.fingerprint(SECRET) != b.fingerprint(SECRET)
    assert a.fingerprint(SECRET) != secret_hash(SECRET)


async def test_another_master_key_cannot_decrypt_and_says_why() -> None:
    token = (await unlocked({MASTER_KEY_ENV: "one"}, Settings())).encrypt(SECRET)
    with pytest.raises(SecretDecryptError, match=MASTER_KEY_ENV):
        (await unlocked({MASTER_KEY_ENV: "two"}, Settings())).decrypt(token)
