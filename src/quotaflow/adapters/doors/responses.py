"""The OpenAI Responses door (``POST /v1/responses``) onto the gateway's chat model.

Decisions:

* Stateless: nothing is stored, whatever ``store`` says, so ``previous_response_id`` is
  refused with a 400 that says to send the whole conversation as ``input`` items.
* ``instructions`` becomes a leading ``system`` message; ``input`` is a string (one user
  message) or items: messages (``input_text``, ``input_image``, ``input_file``,
  ``output_text`` parts), ``function_call`` and ``function_call_output``. ``reasoning``
  items are dropped: they only mean something to the model that wrote them.
* ``text.format`` ``json_schema``/``json_object`` becomes ``response_format``;
  ``max_output_tokens`` becomes ``max_tokens``; function tools keep their schema; namespace,
  custom (freeform) and hosted tools as :mod:`.responses_tools` says.
* ``custom_tool_call`` / ``custom_tool_call_output`` items are a call and its answer like
  functions'; items of hosted tools (``web_search_call``, ``tool_search_call``, …) are
  dropped with the tools.
* ``status`` is ``incomplete`` (reason ``max_output_tokens``) when the answer hit the cap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from quotaflow.adapters import adapter_for
from quotaflow.adapters.base import Adapter
from quotaflow.adapters.doors.base import ask_stream, first_choice, named_event, usage_counts
from quotaflow.adapters.doors.responses_tools import Toolset, custom_arguments, custom_input
from quotaflow.adapters.doors.wrap import TranslatedAdapter
from quotaflow.errors import BadRequest

# History items of hosted tools, which a translated request leaves out with the tools.
HOSTED_ITEMS = frozenset(
    {
        "web_search_call",
        "file_search_call",
        "code_interpreter_call",
        "image_generation_call",
        "computer_call",
        "computer_call_output",
        "local_shell_call",
        "local_shell_call_output",
        "mcp_call",
        "mcp_list_tools",
        "mcp_approval_request",
        "mcp_approval_response",
        "tool_search_call",
        "tool_search_output",
    }
)
PREVIOUS_REFUSED = (
    "previous_response_id is not supported: this gateway keeps no response state; "
    "send the whole conversation as input items (and store: false)"
)


# ---------------------------------------------------------------------------- request


def _part(part: Any) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, Mapping):
        raise BadRequest("content parts must be objects", param="input")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text", "summary_text"):
        return {"type": "text", "text": str(part.get("text") or "")}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal") or "")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise BadRequest(
                "input_image parts need an image_url (file_id is not supported)", param="input"
            )
        image: dict[str, Any] = {"url": url}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        data = part.get("file_data")
        if not isinstance(data, str) or not data:
            raise BadRequest(
                "input_file parts need file_data (file_id is not supported)", param="input"
            )
        file = {"file_data": data, "filename": str(part.get("filename") or "file")}
        return {"type": "file", "file": file}
    raise BadRequest(f"content parts of type {kind!r} are not supported", param="input")


def _content(content: Any) -> Any:
    if isinstance(content, str):
        return content
    if not isinstance(content, Sequence):
        raise BadRequest("message content must be a string or a list of parts", param="input")
    parts = [_part(p) for p in content]
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _function_call(item: Mapping[str, Any], tools: Toolset) -> dict[str, Any]:
    call_id = item.get("call_id")
    kind = item.get("type")
    if not isinstance(call_id, str) or not call_id or not isinstance(item.get("name"), str):
        raise BadRequest(f"{kind} items need a call_id and a name", param="input")
    if kind == "custom_tool_call":
        arguments = custom_arguments(item.get("input"))
    else:
        given = item.get("arguments")
        arguments = given if isinstance(given, str) else "{}"
    name = tools.chat_name(item["name"], item.get("namespace"))
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _messages(raw: Any, tools: Toolset) -> list[dict[str, Any]]:
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, Sequence) or not raw:
        raise BadRequest("'input' must be a string or a non-empty list of items", param="input")
    out: list[dict[str, Any]] = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise BadRequest("input items must be objects", param="input")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise BadRequest(
                    f"input messages of role {role!r} are not supported", param="input"
                )
            out.append({"role": role, "content": _content(item.get("content"))})
        elif kind in ("function_call", "custom_tool_call"):
            call = _function_call(item, tools)
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)  # parallel calls share one assistant turn
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            text = output if isinstance(output, str) else _content(output)
            out.append(
                {"role": "tool", "tool_call_id": str(item.get("call_id") or ""), "content": text}
            )
        elif kind == "reasoning" or kind in HOSTED_ITEMS:
            continue
        else:
            raise BadRequest(f"input items of type {kind!r} are not supported", param="input")
    return out


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, Mapping) else None
    if not isinstance(fmt, Mapping) or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": spec}
    raise BadRequest(f"unsupported text.format type {fmt.get('type')!r}", param="text")


def to_chat_request(body: Any) -> dict[str, Any]:
    """The OpenAI chat-completions body for a Responses API request."""
    if not isinstance(body, Mapping):
        raise BadRequest("the request body must be a JSON object")
    if body.get("previous_response_id"):
        raise BadRequest(PREVIOUS_REFUSED, param="previous_response_id")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a string", param="model")
    tools = Toolset.of(body.get("tools"))
    messages = _messages(body.get("input"), tools)
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.insert(0, {"role": "system", "content": instructions})
    out: dict[str, Any] = {"model": model, "messages": messages}
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p", "parallel_tool_calls", "user"):
        if body.get(name) is not None:
            out[name] = body[name]
    if tools.chat_tools:
        out["tools"] = tools.chat_tools
        if body.get("tool_choice") is not None:
            out["tool_choice"] = tools.choice(body["tool_choice"])
    fmt = _response_format(body.get("text"))
    if fmt is not None:
        out["response_format"] = fmt
    if body.get("stream") is True:
        ask_stream(out)
    return out


# ---------------------------------------------------------------------------- answer


def responses_usage(usage: Any) -> dict[str, Any]:
    prompt, completion, cached, reasoning = usage_counts(usage)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def response_id(completion_id: Any) -> str:
    text = str(completion_id or "").removeprefix("chatcmpl-")
    return "resp_" + (text or "quotaflow")


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": content if status == "completed" else [],
    }


class Envelope:
    """The ``response`` object's fields that echo the request."""

    def __init__(self, request: Mapping[str, Any], created: int) -> None:
        self.created = created
        self.tools = Toolset.of(request.get("tools"))
        self.fields = {
            "instructions": request.get("instructions"),
            "max_output_tokens": request.get("max_output_tokens"),
            "metadata": request.get("metadata") or {},
            "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "store": False,
            "temperature": request.get("temperature"),
            "text": request.get("text") or {"format": {"type": "text"}},
            "tool_choice": request.get("tool_choice", "auto"),
            "tools": list(request.get("tools") or []),
            "top_p": request.get("top_p"),
            "truncation": "disabled",
            "user": request.get("user"),
        }

    def response(
        self, rid: str, model: str, status: str, output: list[dict[str, Any]], usage: Any
    ) -> dict[str, Any]:
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {
            "id": rid,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": None,
            "incomplete_details": incomplete,
            "model": model,
            "output": output,
            "usage": responses_usage(usage) if usage is not None else None,
            **self.fields,
        }


def from_chat_completion(
    completion: Mapping[str, Any], envelope: Envelope, model: str
) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` as a Responses API ``response``."""
    rid = response_id(completion.get("id"))
    choice = first_choice(completion)
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        output.append(message_item(f"msg_{rid[5:]}", text))
    for n, call in enumerate(message.get("tool_calls") or ()):
        fn = call.get("function") or {}
        call_id = str(call.get("id") or f"call_{n}")
        name, arguments = str(fn.get("name") or ""), str(fn.get("arguments") or "")
        output.append(envelope.tools.call_item(call_id, name, arguments))
    status = "incomplete" if choice.get("finish_reason") == "length" else "completed"
    return envelope.response(rid, model, status, output, completion.get("usage") or {})


# ---------------------------------------------------------------------------- stream


class ResponsesStream:
    """The gateway's OpenAI chunks as the Responses API's typed events, numbered by
    ``sequence_number``: ``response.created``, per output item ``output_item.added`` … its
    deltas … ``output_item.done``, then ``response.completed`` with usage."""

    def __init__(self, envelope: Envelope, model: str) -> None:
        self._env = envelope
        self._model = model
        self._seq = 0
        self._rid = ""
        self._output: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the output item being written
        self._open_tool: int | None = None
        self._args = ""  # the open call's arguments as the chat model wrote them
        self._status = "completed"
        self._usage: Any = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return named_event(kind, payload)

    def _start(self, chunk: Mapping[str, Any]) -> list[bytes]:
        if self._rid:
            return []
        self._rid = response_id(chunk.get("id"))
        shell = self._env.response(self._rid, self._model, "in_progress", [], None)
        return [
            self._event("response.created", response=shell),
            self._event("response.in_progress", response=shell),
        ]

    def chunk(self, chunk: Mapping[str, Any]) -> list[bytes]:
        out = self._start(chunk)
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        choice = first_choice(chunk)
        delta = choice.get("delta") or {}
        text = delta.get("content")
        if isinstance(text, str) and text:
            out += self._text(text)
        for call in delta.get("tool_calls") or ():
            out += self._call(call)
        if choice.get("finish_reason") == "length":
            self._status = "incomplete"
        return out

    def _text(self, text: str) -> list[bytes]:
        out: list[bytes] = []
        if self._open is None or self._open["type"] != "message":
            out += self._close()
            item = message_item(f"msg_{self._rid[5:]}_{len(self._output)}", "", "in_progress")
            self._open, self._open_tool = {**item, "text": ""}, None
            out.append(
                self._event("response.output_item.added", output_index=len(self._output), item=item)
            )
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out.append(
                self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=len(self._output),
                    content_index=0,
                    part=part,
                )
            )
        self._open["text"] += text
        out.append(
            self._event(
                "response.output_text.delta",
                item_id=self._open["id"],
                output_index=len(self._output),
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return out

    def _call(self, call: Mapping[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        index = call.get("index", 0)
        fn = call.get("function") or {}
        if self._open is None or self._open_tool != index:
            out += self._close()
            call_id = str(call.get("id") or f"call_{index}")
            flat = str(fn.get("name") or "")
            item = self._env.tools.call_item(call_id, flat, "", "in_progress")
            self._open, self._open_tool, self._args = item, index, ""
            out.append(
                self._event("response.output_item.added", output_index=len(self._output), item=item)
            )
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            self._args += args
            if self._open["type"] == "function_call":  # a custom tool's text comes whole at the end
                self._open["arguments"] += args
                out.append(
                    self._event(
                        "response.function_call_arguments.delta",
                        item_id=self._open["id"],
                        output_index=len(self._output),
                        delta=args,
                    )
                )
        return out

    def _close(self) -> list[bytes]:
        item, self._open, self._open_tool = self._open, None, None
        if item is None:
            return []
        n = len(self._output)
        out: list[bytes] = []
        if item["type"] == "message":
            text = item.pop("text")
            done = message_item(item["id"], text)
            part = done["content"][0]
            out.append(
                self._event(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=n,
                    content_index=0,
                    text=text,
                    logprobs=[],
                )
            )
            out.append(
                self._event(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=n,
                    content_index=0,
                    part=part,
                )
            )
        elif item["type"] == "custom_tool_call":
            done = {**item, "input": custom_input(self._args), "status": "completed"}
            ids = {"item_id": item["id"], "output_index": n}
            if done["input"]:
                out.append(
                    self._event("response.custom_tool_call_input.delta", **ids, delta=done["input"])
                )
            out.append(
                self._event("response.custom_tool_call_input.done", **ids, input=done["input"])
            )
        else:
            done = {**item, "status": "completed"}
            out.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=n,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
        self._output.append(done)
        out.append(self._event("response.output_item.done", output_index=n, item=done))
        return out

    def done(self) -> list[bytes]:
        out = self._start({})
        out += self._close()
        final = self._env.response(
            self._rid, self._model, self._status, self._output, self._usage or {}
        )
        kind = "response.completed" if self._status == "completed" else "response.incomplete"
        out.append(self._event(kind, response=final))
        return out

    def error(self, error: Mapping[str, Any]) -> list[bytes]:
        out = self._start({})
        failed = self._env.response(self._rid, self._model, "failed", self._output, self._usage)
        failed["error"] = {"code": "server_error", "message": str(error.get("message") or "")}
        out.append(self._event("response.failed", response=failed))
        return out


class ResponsesDoor:
    """Every protocol is translated (the chat-completions providers have no Responses API)."""

    model_kind = "chat"

    def __init__(self, envelope: Envelope, model: str) -> None:
        self._env = envelope
        self._model = model

    def adapter(self, protocol: str) -> Adapter | None:
        env, model = self._env, self._model
        return TranslatedAdapter(
            adapter_for(protocol),
            lambda c: from_chat_completion(c, env, model),
            lambda: ResponsesStream(env, model),
        )
