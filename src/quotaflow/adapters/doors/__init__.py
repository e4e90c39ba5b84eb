"""Inbound doors: the other protocols clients speak to quotaflow, translated to and from the
gateway's own model (OpenAI chat completions).

Each door module is pure translation, like the outbound adapters read backwards: a request
in the door's protocol becomes an OpenAI chat-completions body (``to_chat_request``), a
``chat.completion`` becomes the door's answer (``from_chat_completion``), and a
:class:`~quotaflow.adapters.doors.base.DoorStream` re-renders the gateway's OpenAI stream
frames as the door's own events. The web layer does the I/O and calls the gateway.
"""
