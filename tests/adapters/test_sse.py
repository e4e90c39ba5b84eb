"""The incremental SSE parser: every line ending, split anywhere, comments, multi-line data."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from quotaflow.adapters.base import SSEEvent
from quotaflow.adapters.sse import SSEParser


def feed_all(chunks: list[bytes]) -> list[SSEEvent]:
    p = SSEParser()
    out: list[SSEEvent] = []
    for c in chunks:
        out.extend(p.feed(c))
    out.extend(p.close())
    return out


def test_openai_framing() -> None:
    raw = b'data: {"a":1}\n\ndata: [DONE]\n\n'
    assert feed_all([raw]) == [SSEEvent(None, '{"a":1}'), SSEEvent(None, "[DONE]")]


def test_anthropic_named_events() -> None:
    raw = b'event: message_start\ndata: {"type":"message_start"}\n\nevent: ping\ndata: {"type": "ping"}\n\n'
    assert feed_all([raw]) == [
        SSEEvent("message_start", '{"type":"message_start"}'),
        SSEEvent("ping", '{"type": "ping"}'),
    ]


def test_gemini_crlf_framing_without_terminator() -> None:
    raw = b'data: {"x":1}\r\n\r\ndata: {"x":2}\r\n\r\n'
    assert feed_all([raw]) == [SSEEvent(None, '{"x":1}'), SSEEvent(None, '{"x":2}')]


def test_comments_are_skipped_and_multiline_data_joined() -> None:
    raw = b": OPENROUTER PROCESSING\n\ndata: line one\ndata: line two\n\n"
    assert feed_all([raw]) == [SSEEvent(None, "line one\nline two")]


def test_a_last_event_without_blank_line_is_delivered_at_close() -> None:
    assert feed_all([b"data: tail"]) == [SSEEvent(None, "tail")]


def test_cr_split_from_its_lf_is_one_line_end() -> None:
    assert feed_all([b"data: a\r", b"\n\r", b"\n"]) == [SSEEvent(None, "a")]


@given(
    st.lists(st.text(alphabet='abc{}:" 123é', min_size=1, max_size=12), min_size=1, max_size=6),
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.data(),
)
def test_any_split_gives_the_same_events(
    payloads: list[str], eol: bytes, data: st.DataObject
) -> None:
    raw = b"".join(b"data: " + p.encode() + eol + eol for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    chunks, prev = [], 0
    for c in [*cuts, len(raw)]:
        chunks.append(raw[prev:c])
        prev = c
    assert feed_all(chunks) == [
        SSEEvent(None, p.strip(" ") if p.startswith(" ") else p) for p in payloads
    ] or feed_all(chunks) == feed_all([raw])
