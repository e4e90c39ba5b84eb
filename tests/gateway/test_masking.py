"""Secrets never survive in upstream text: the one booking path masks every configured key,
and any run of 8 or more of its characters, before the text is classified, kept or shown."""

from __future__ import annotations

from pathlib import Path

from quotaflow.adapters.base import UpstreamFailure
from quotaflow.engine.catalog import mask_secret
from quotaflow.gateway import Gateway
from quotaflow.gateway.booking import SecretMask
from quotaflow.storage.ledgers.sqlite import SqliteLedger
from quotaflow.testing import FrozenClock, config, key
from quotaflow.types import ErrorKind

SECRET = "sk-proj-Zq8vX1cT4mW7nB2rL5kP9dF3hJ6"
OTHER = "gsk_0123456789abcdefghijKLMN"


def test_a_whole_secret_becomes_its_masked_form() -> None:
    m = SecretMask([SECRET, OTHER])
    out = m.text(f"Incorrect API key provided: {SECRET}. Also {OTHER}!")
    assert SECRET not in out and OTHER not in out
    assert out == f"Incorrect API key provided: {mask_secret(SECRET)}. Also {mask_secret(OTHER)}!"


def test_eight_characters_of_a_secret_in_a_row_are_masked_seven_are_not() -> None:
    m = SecretMask([SECRET])
    eight, seven = SECRET[10:18], SECRET[10:17]
    assert eight not in m.text(f"key ending …{eight} was revoked")
    assert mask_secret(SECRET) in m.text(f"key ending …{eight} was revoked")
    assert m.text(f"key ending …{seven} was revoked") == f"key ending …{seven} was revoked"
    middle = SECRET[5:-5]  # a provider that trims both ends still leaks the middle
    assert middle not in m.text(f"bad key {middle}")


def test_a_short_secret_is_masked_where_it_stands_alone_not_inside_other_words() -> None:
    m = SecretMask(["BAD", "k"])
    assert m.text("Incorrect API key provided: BAD.") == "Incorrect API key provided: …AD."
    assert m.text("BADGE of k9 and invalid_api_key") == "BADGE of k9 and invalid_api_key"


def test_text_without_secrets_is_returned_unchanged_and_masking_is_idempotent() -> None:
    m = SecretMask([SECRET])
    plain = "Rate limit reached for requests; retry in 20s"
    assert m.text(plain) is plain
    once = m.text(f"{SECRET} {SECRET[:12]}")
    assert m.text(once) == once


def test_bytes_keep_what_is_not_a_secret_even_when_not_utf8() -> None:
    m = SecretMask([SECRET])
    raw = b'{"error": "' + SECRET.encode() + b'"}\xff\xfe'
    out = m.body(raw)
    assert SECRET.encode() not in out
    assert out.endswith(b'"}\xff\xfe')
    assert m.body(b"nothing here") == b"nothing here"


def test_a_failure_is_masked_in_its_message_and_in_the_body_handed_back() -> None:
    f = UpstreamFailure(ErrorKind.AUTH, 401, f"invalid key {SECRET}")
    f.body = {"error": {"message": f"invalid key {SECRET}", "param": [SECRET[3:20]], "n": 1}}
    SecretMask([SECRET]).failure(f)
    assert SECRET not in f.message
    assert f.body == {
        "error": {
            "message": f"invalid key {mask_secret(SECRET)}",
            "param": [mask_secret(SECRET)],
            "n": 1,
        }
    }


def test_the_gateway_masks_keys_added_at_runtime_too(tmp_path: Path) -> None:
    cfg = config({"providers": [{"name": "openai", "keys": [{"id": "k1", "secret": SECRET}]}]})
    gw = Gateway(cfg, ledger=SqliteLedger(tmp_path / "q.db"), clock=FrozenClock())
    assert SECRET not in gw.booking.mask.text(SECRET)
    assert gw.booking.mask.text(OTHER) == OTHER
    gw.add_key(key("k2", "openai", secret=OTHER))
    assert OTHER not in gw.booking.mask.text(f"echo {OTHER}")


# Two keys with a common stem, as real keys have (``sk-proj-``, ``sk-ant-api03-``).
LEAK1 = "sk-test-leakysecret-ABCDEF1234567890"
LEAK2 = "sk-test-leakysecret-ZYXWVU0987654321"


def quoted(secret: str) -> str:
    """How OpenAI quotes a key it refuses: its first 20 characters, stars, its last four."""
    return f"Incorrect API key provided: {secret[:20]}************{secret[-4:]}."


def runs(secret: str) -> set[str]:
    return {secret[i : i + 8] for i in range(len(secret) - 7)}


def test_a_run_several_keys_share_is_named_after_none_of_them() -> None:
    for m in (SecretMask([LEAK1, LEAK2]), SecretMask([LEAK2, LEAK1])):
        out = m.text(quoted(LEAK2))
        assert out == "Incorrect API key provided: sk-test…************4321."
        assert mask_secret(LEAK1) not in out and mask_secret(LEAK2) not in out


def test_a_shared_run_is_named_after_the_key_the_text_is_about() -> None:
    m = SecretMask([LEAK1, LEAK2])
    for own, other in ((LEAK1, LEAK2), (LEAK2, LEAK1)):
        out = m.text(quoted(own), own=own)
        assert out == f"Incorrect API key provided: {mask_secret(own)}************{own[-4:]}."
        assert other[-4:] not in out
    # a key the run is not part of is not named either
    assert m.text(quoted(LEAK2), own=SECRET) == m.text(quoted(LEAK2))
    m3 = SecretMask([LEAK1, LEAK2, SECRET])
    assert m3.text(quoted(LEAK2), own=SECRET) == m.text(quoted(LEAK2))


def test_a_run_of_one_key_alone_is_named_after_it_whichever_key_the_text_is_about() -> None:
    m = SecretMask([LEAK1, LEAK2])
    assert m.text(f"key {LEAK1} revoked", own=LEAK2) == f"key {mask_secret(LEAK1)} revoked"
    assert m.text(f"…{LEAK2[12:]}", own=LEAK1) == f"…{mask_secret(LEAK2)}"


def test_no_piece_of_keys_sharing_a_stem_gets_through_whoever_the_text_is_about() -> None:
    secrets = [LEAK1, LEAK2, "sk-test-leakyother-0000111122223333"]
    m = SecretMask(secrets)
    every_run = set().union(*(runs(s) for s in secrets))
    pieces = [
        s[i:j] for s in secrets for i in range(0, len(s), 3) for j in range(i + 8, len(s) + 1, 5)
    ]
    pieces += [LEAK1 + LEAK2, LEAK2[:20] + LEAK1[20:], f"{LEAK1[4:]}|{LEAK2[:-3]}"]
    for own in (None, *secrets):
        for piece in pieces:
            out = m.text(f"a {piece} b", own=own)
            assert not [r for r in every_run if r in out], (piece, out)
            assert m.text(out, own=own) == out  # masking twice changes nothing more
