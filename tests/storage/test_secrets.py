"""Secrets at rest: Fernet with a master key from the environment or a 0600 key file."""

from __future__ import annotations

from pathlib import Path

import pytest

from quotaflow.storage.secrets import (
    KEY_FILE,
    MASTER_KEY_ENV,
    SecretBox,
    SecretDecryptError,
    load_master_key,
)

SECRET = "sk-ant-api03-very-secret-x9Qf"


def test_a_key_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    key = load_master_key(tmp_path, env={})
    path = tmp_path / KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    token = SecretBox(key).encrypt(SECRET)
    assert SECRET.encode() not in token
    assert SecretBox(load_master_key(tmp_path, env={})).decrypt(token) == SECRET


def test_the_environment_wins_and_a_passphrase_works(tmp_path: Path) -> None:
    env = {MASTER_KEY_ENV: "correct horse battery staple"}
    token = SecretBox(load_master_key(tmp_path, env=env)).encrypt(SECRET)
    assert not (tmp_path / KEY_FILE).exists()
    assert SecretBox(load_master_key(None, env=env)).decrypt(token) == SECRET


def test_another_master_key_cannot_decrypt_and_says_why(tmp_path: Path) -> None:
    token = SecretBox(load_master_key(None, env={MASTER_KEY_ENV: "one"})).encrypt(SECRET)
    with pytest.raises(SecretDecryptError, match=MASTER_KEY_ENV):
        SecretBox(load_master_key(None, env={MASTER_KEY_ENV: "two"})).decrypt(token)
