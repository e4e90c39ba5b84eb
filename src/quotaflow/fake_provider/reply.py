"""What the fake model answers: a word cycle, an echo, or a tool call.

* The last user message contains ``ECHO:`` followed by text → the reply is that text,
  re-joined word by word (one token per whitespace-separated word).
* The request offers a tool (and does not forbid tool use) and the *last* turn is a user
  message (system messages after it do not count) containing ``CALL_TOOL`` → a call of the first (or the forced) tool with arguments
  ``{"q": "<text after CALL_TOOL, or 'alpha'>"}``.
* A request that requires a tool call (``tool_choice`` ``required``/``any``/a named tool,
  Gemini's ``ANY`` mode) and no ``CALL_TOOL`` → a call of that tool with the smallest input
  its schema accepts, as a model must call it.
* A request for JSON (``response_format``, ``responseMimeType: application/json``,
  ``output_config.format``) → the smallest JSON its schema accepts (:mod:`.json_reply`).
* Otherwise the words of :data:`WORDS` in a cycle.

The number of words is ``min(max_tokens, completion_tokens)`` (``completion_tokens`` alone
without a max; the echo's own length instead of ``completion_tokens`` for an echo);
the reply finishes with ``"length"`` when ``max_tokens`` cut it short, else ``"stop"``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from quotaflow.fake_provider.tokens import tool_call_tokens

WORDS: tuple[str, ...] = (
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
)
ECHO_MARKER = "ECHO:"
TOOL_MARKER = "CALL_TOOL"
ARGUMENT_PIECE_CHARS = 8

Finish = Literal["stop", "length", "tool_calls"]

# Stream pieces of the word cycle: "alpha", " beta", " gamma", … precomputed once.
_CYCLE_FIRST = WORDS[0]
_CYCLE_REST = tuple(" " + w for w in WORDS)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the fake model makes; ``arguments`` is the JSON text."""

    name: str
    arguments: str
    args: dict[str, Any]

    def argument_pieces(self) -> list[str]:
        """The arguments cut into the small pieces a stream sends them in."""
        a = self.arguments
        return [a[i : i + ARGUMENT_PIECE_CHARS] for i in range(0, len(a), ARGUMENT_PIECE_CHARS)]


@dataclass(frozen=True, slots=True)
class Reply:
    """A planned answer: its text pieces (one per token) or a tool call, and why it ends."""

    pieces: tuple[str, ...]
    completion_tokens: int
    finish: Finish
    tool_call: ToolCall | None = None

    @property
    def text(self) -> str:
        """The reply's whole text ("" for a tool call)."""
        return "".join(self.pieces)


def cycle_pieces(n: int) -> tuple[str, ...]:
    """The first ``n`` words of the cycle as stream pieces (a space before all but the first)."""
    if n <= 0:
        return ()
    return (_CYCLE_FIRST, *(_CYCLE_REST[i % len(WORDS)] for i in range(1, n)))


@functools.lru_cache(maxsize=256)
def _cycle_reply(n: int, finish: Finish) -> Reply:
    # Replies are immutable, and the same few lengths repeat on every request.
    return Reply(cycle_pieces(n), n, finish)


def _word_pieces(words: list[str]) -> tuple[str, ...]:
    return tuple(w if i == 0 else " " + w for i, w in enumerate(words))


def _tool_call(name: str, user_text: str) -> Reply:
    after = user_text.split(TOOL_MARKER, 1)[1].strip()
    args = {"q": after or WORDS[0]}
    arguments = orjson.dumps(args).decode()
    return Reply(
        (), tool_call_tokens(name, arguments), "tool_calls", ToolCall(name, arguments, args)
    )


def _json_reply(text: str, max_tokens: int | None) -> Reply:
    pieces = [text[i : i + 4] for i in range(0, len(text), 4)]  # a token is ~4 characters
    n = len(pieces) if max_tokens is None else min(max_tokens, len(pieces))
    return Reply(tuple(pieces[:n]), n, "length" if n < len(pieces) else "stop")


def plan_reply(
    *,
    last_user_text: str | None,
    last_is_user: bool,
    tool_name: str | None,
    max_tokens: int | None,
    completion_tokens: int,
    json_text: str | None = None,
    forced_call: tuple[str, dict[str, Any]] | None = None,
) -> Reply:
    """Decide the answer to a request (see the module docstring for the rules)."""
    if (
        last_user_text is not None
        and tool_name is not None
        and last_is_user
        and TOOL_MARKER in last_user_text
    ):
        return _tool_call(tool_name, last_user_text)
    if forced_call is not None:
        name, args = forced_call
        arguments = orjson.dumps(args).decode()
        return Reply(
            (), tool_call_tokens(name, arguments), "tool_calls", ToolCall(name, arguments, args)
        )
    if json_text is not None:
        return _json_reply(json_text, max_tokens)
    if last_user_text is not None and ECHO_MARKER in last_user_text:
        words = last_user_text.split(ECHO_MARKER, 1)[1].split()
        if words:
            n = len(words) if max_tokens is None else min(max_tokens, len(words))
            finish: Finish = "length" if n < len(words) else "stop"
            return Reply(_word_pieces(words[:n]), n, finish)
    budget = max(0, completion_tokens)
    n = budget if max_tokens is None else min(max_tokens, budget)
    return _cycle_reply(n, "length" if n < budget else "stop")


def last_turn_is_user(messages: list[Any]) -> bool:
    """Whether the conversation's last turn, not counting ``system`` messages placed after
    it (a mid-conversation instruction), is the user's."""
    for message in reversed(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "developer"):
            return role == "user"
    return False
