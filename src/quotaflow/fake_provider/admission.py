"""The checks every fake endpoint runs before it answers: the key, its quota, the rate limit.

Each refusal is the protocol's own error, counted as an error in the key's statistics.
"""

from __future__ import annotations

from quotaflow.fake_provider.protocol import ChatRequest, WireProtocol
from quotaflow.fake_provider.state import FakeProviderState


def admit(
    state: FakeProviderState, proto: WireProtocol, key: str | None, model: str, prompt: int
) -> ChatRequest:
    check = state.check_key(key)
    if check == "missing" or key is None:
        state.record_error(key, None)
        raise proto.missing_key_error()
    if check == "invalid":
        state.record_error(key, None)
        raise proto.invalid_key_error(key)
    req = ChatRequest(key, model, False, None, prompt, None, True, None)
    if state.is_exhausted(key):
        state.record_error(key, model)
        raise proto.quota_error(req)
    refusal = state.limiter.admit(key, state.monotonic(), state.config.rpm, state.config.tpm)
    if refusal is not None:
        state.record_error(key, model)
        raise proto.rate_limit_error(req, refusal)
    return req
