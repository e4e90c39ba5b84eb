"""Pure parts of the fake provider: token rule, reply planning, faults queue, windows, formats."""

from __future__ import annotations

import pytest

from quotaflow.fake_provider.anthropic import rfc3339
from quotaflow.fake_provider.faults import Fault, FaultQueue, FaultSpecError, fault_from_json
from quotaflow.fake_provider.gemini import google_duration
from quotaflow.fake_provider.openai import go_duration
from quotaflow.fake_provider.protocol import retry_after_header
from quotaflow.fake_provider.ratelimit import RateLimiter
from quotaflow.fake_provider.reply import WORDS, Reply, plan_reply
from quotaflow.fake_provider.tokens import PromptCounter, tool_call_tokens


def test_prompt_counter_follows_the_documented_rule() -> None:
    counter = PromptCounter()
    counter.add_message(["hello"])  # 3 + ceil(5/4) = 5
    counter.add_message(["ab", "cd", "e"], images=2)  # 3 + ceil(5/4) = 5, plus 2 images
    counter.add_message(["é" * 3])  # 6 UTF-8 bytes → 3 + 2
    assert counter.tokens == 3 + 5 + 5 + 5 + 2 * 85
    assert PromptCounter().tokens == 3


def test_tool_call_tokens_round_up_and_are_at_least_one() -> None:
    assert tool_call_tokens("f", '{"q":"x"}') == 3  # 10 bytes
    assert tool_call_tokens("", "") == 1


def reply(
    text: str | None,
    *,
    tool: str | None = None,
    max_tokens: int | None = None,
    budget: int = 16,
    last_is_user: bool = True,
) -> Reply:
    return plan_reply(
        last_user_text=text,
        last_is_user=last_is_user,
        tool_name=tool,
        max_tokens=max_tokens,
        completion_tokens=budget,
    )


def test_word_cycle_wraps_and_finish_reasons() -> None:
    long = reply("hi", budget=26)
    assert long.text.split() == [*WORDS, "alpha", "beta"]
    assert long.finish == "stop"
    assert long.completion_tokens == 26
    assert len(set(WORDS)) == len(WORDS)
    cut = reply("hi", max_tokens=2)
    assert (cut.text, cut.finish, cut.completion_tokens) == ("alpha beta", "length", 2)
    exact = reply("hi", max_tokens=16)
    assert exact.finish == "stop"
    assert reply(None, budget=0).pieces == ()


def test_echo_is_word_tokenised_and_cut_by_max_tokens() -> None:
    assert reply("say ECHO:  a\tb  c ").text == "a b c"
    cut = reply("ECHO: a b c", max_tokens=2)
    assert (cut.text, cut.finish) == ("a b", "length")
    assert reply("ECHO:   ").text.startswith("alpha")  # nothing to echo → the cycle


def test_tool_call_needs_a_tool_and_a_final_user_message() -> None:
    call = reply("CALL_TOOL  the weather", tool="lookup")
    assert call.finish == "tool_calls"
    assert call.tool_call is not None
    assert call.tool_call.name == "lookup"
    assert call.tool_call.args == {"q": "the weather"}
    assert (
        "".join(call.tool_call.argument_pieces())
        == call.tool_call.arguments
        == '{"q":"the weather"}'
    )
    bare = reply("CALL_TOOL", tool="f").tool_call
    assert bare is not None
    assert bare.args == {"q": "alpha"}
    assert reply("CALL_TOOL x", tool=None).tool_call is None
    assert reply("CALL_TOOL x", tool="f", last_is_user=False).tool_call is None


def test_fault_queue_matches_oldest_first_and_counts_down() -> None:
    queue = FaultQueue()
    queue.add(Fault(kind="status", status=500, key="a", count=2))
    queue.add(Fault(kind="timeout", model="m", count=-1))
    assert queue.take("b", "x") is None
    taken = [queue.take("a", "m") for _ in range(5)]
    assert [(f.kind, f.status) if f else None for f in taken] == [("status", 500)] * 2 + [
        ("timeout", 500)
    ] * 3
    queue.clear()
    assert not queue


@pytest.mark.parametrize(
    "spec",
    [{"kind": "explode"}, {"kind": "status", "status": 200}, {"count": 0}, {"after_chunks": -1}, {"key": 5}, {"retry_after": "soon"}, []],
)  # fmt: skip
def test_fault_specs_are_validated(spec: object) -> None:
    with pytest.raises(FaultSpecError):
        fault_from_json(spec)


def test_fault_spec_defaults() -> None:
    fault = fault_from_json({"kind": "cut_stream", "after_chunks": 3, "retry_after": 1})
    assert (fault.kind, fault.count, fault.after_chunks, fault.retry_after, fault.key) == (
        "cut_stream",
        1,
        3,
        1.0,
        None,
    )


def test_rate_limiter_fixed_window() -> None:
    limiter = RateLimiter()
    assert limiter.admit("k", 100.0, rpm=2, tpm=None) is None
    assert limiter.admit("k", 101.0, rpm=2, tpm=None) is None
    refusal = limiter.admit("k", 110.0, rpm=2, tpm=None)
    assert refusal is not None
    assert refusal.kind == "requests"
    assert refusal.retry_after_s == pytest.approx(50.0)
    assert limiter.admit("other", 110.0, rpm=2, tpm=None) is None
    assert limiter.admit("k", 160.0, rpm=2, tpm=None) is None  # window opened at 100 has closed
    limiter.charge("k", 161.0, 10, 5)
    refusal = limiter.admit("k", 162.0, rpm=None, tpm=15)
    assert refusal is not None
    assert (refusal.kind, refusal.used) == ("tokens", 15)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.012, "12ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (360, "6m0s"),
        (3723, "1h2m3s"),
        (59.999, "59.999s"),
    ],
)
def test_go_durations(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_other_formats() -> None:
    assert rfc3339(1_755_780_059) == "2025-08-21T12:40:59Z"
    assert google_duration(37) == "37s"
    assert google_duration(0.5) == "0.5s"
    assert retry_after_header(7) == "7"
    assert retry_after_header(0.25) == "0.25"
