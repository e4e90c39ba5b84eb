"""The fake provider's deterministic token counting rule.

Prompt tokens::

    prompt_tokens = 3 + Σ over messages (3 + ceil(text_bytes / 4)) + 85 × images

where ``text_bytes`` is the UTF-8 byte length of all the text a message carries, summed:
text parts, tool call names and their JSON arguments, tool results, and the system
prompt (which counts as one message in every protocol, whether it is a ``system`` message,
Anthropic's top-level ``system`` or Gemini's ``systemInstruction``). Every image part
(OpenAI ``image_url``, Anthropic ``image``, Gemini ``inlineData``/``fileData``) counts 85.
Tool definitions are not counted.

Completion tokens: one per word of the reply (see :mod:`.reply`); a tool call costs
``ceil(utf8_bytes(name + arguments_json) / 4)``, at least 1.

The rule is deliberately simple so that tests can compute the expected numbers by hand:
``[{"role": "user", "content": "hello"}]`` is ``3 + (3 + ceil(5 / 4)) = 8`` prompt tokens.
"""

from __future__ import annotations

from collections.abc import Iterable

IMAGE_TOKENS = 85
PER_REQUEST_TOKENS = 3
PER_MESSAGE_TOKENS = 3


def ceil_quarter(n_bytes: int) -> int:
    """``ceil(n_bytes / 4)`` in integers."""
    return (n_bytes + 3) // 4


def text_bytes(text: str) -> int:
    """UTF-8 length of ``text`` (ASCII fast path: most test prompts are ASCII)."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


class PromptCounter:
    """Accumulates the prompt-token count message by message."""

    __slots__ = ("images", "total")

    def __init__(self) -> None:
        self.total = PER_REQUEST_TOKENS
        self.images = 0

    def add_message(self, pieces: Iterable[str], images: int = 0) -> None:
        """Count one message made of the given text pieces and ``images`` image parts."""
        n_bytes = sum(text_bytes(p) for p in pieces)
        self.total += PER_MESSAGE_TOKENS + ceil_quarter(n_bytes)
        self.images += images

    @property
    def tokens(self) -> int:
        """The prompt tokens counted so far."""
        return self.total + IMAGE_TOKENS * self.images


def tool_call_tokens(name: str, arguments: str) -> int:
    """Completion tokens charged for one tool call."""
    return max(1, ceil_quarter(text_bytes(name) + text_bytes(arguments)))
