"""The OpenAPI 3.1 document of ``/api`` and ``/v1``, built from plain data.

Static: it depends on nothing but this file, so tests (schemathesis) load it without a
server. Every ``/api`` error is the envelope ``{"success": false, "message": …}``;
every ``/v1`` error is OpenAI's ``{"error": {…}}``.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

NAME_PATTERN = "^[A-Za-z0-9_.@-]{1,64}$"
STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}
NULLABLE_STR = {"type": ["string", "null"]}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    """An object with these required and optional properties (others allowed)."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }


def closed(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    """An ``/api`` request body: these properties and no other (unknown fields are a 400)."""
    return {**obj(required, optional), "additionalProperties": False}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def ok_obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    return obj({"success": {"const": True}, **required}, optional)


API_ERROR = obj(
    {"success": {"const": False}, "message": STR},
    {"error": NULLABLE_STR, "details": {"type": "object"}},
)
OPENAI_ERROR = obj(
    {"error": obj({"message": STR, "type": STR}, {"param": NULLABLE_STR, "code": NULLABLE_STR})}
)
LIMIT = obj({"id": STR, "metric": STR, "window": STR, "amount": NUM, "used": NUM, "remaining": NUM})
KEY_STATUS = obj(
    {
        "key_id": STR,
        "api_key": STR,
        "quota_total": NUM,
        "quota_used": NUM,
        "remaining": NUM,
        "used_pct": NUM,
        "state": {
            "enum": ["ok", "warning", "critical", "depleted", "invalid", "disabled", "cooling"]
        },
        "available": BOOL,
        "limits": {"type": "array", "items": ref("Limit")},
    }
)
PROVIDER_STATUS = obj(
    {
        "provider": STR,
        "quota_total": NUM,
        "quota_used": NUM,
        "remaining": NUM,
        "used_pct": NUM,
        "state": {
            "enum": ["ok", "warning", "critical", "depleted", "invalid", "disabled", "cooling"]
        },
        "keys": {"type": "array", "items": ref("KeyStatus")},
    }
)
MEASURE = obj({"tokens_used": INT, "requests": INT, "cost_usd": NUM})
ALERT = obj(
    {
        "id": {"type": ["integer", "null"]},
        "timestamp": STR,
        "kind": STR,
        "subject": STR,
        "level": STR,
        "message": STR,
    },
    {
        "active": {
            "type": "boolean",
            "description": "it still holds: the newest alert of its subject, still at that level",
        }
    },
)
BUDGET = obj(
    {
        "metric": {"enum": ["tokens", "requests", "cost"]},
        "window": {"type": "string", "minLength": 1},
        "amount": {"type": "number", "minimum": 0},
    },
    {"provider": NULLABLE_STR},
)
AGENT_IN = closed(
    {"name": {"type": "string", "pattern": NAME_PATTERN}},
    {
        "budgets": {"type": "array", "items": ref("Budget")},
        "providers": {"type": "array", "items": STR},
        "switch_threshold": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "requests_per_minute": {"type": ["integer", "null"], "minimum": 1},
        "requests_per_day": {"type": ["integer", "null"], "minimum": 1},
        "max_tokens_per_request": {"type": ["integer", "null"], "minimum": 1},
        "default_max_tokens": {"type": ["integer", "null"], "minimum": 1},
        "admin": BOOL,
    },
)
CHAT_IN = obj(
    {
        "model": {"type": "string", "minLength": 1},
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": obj({"role": {"enum": ["system", "user", "assistant"]}, "content": STR}),
        },
    },
    {
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 4096},
        "stream": BOOL,
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "user": STR,
    },
)
CHAT_OUT = obj(
    {"id": STR, "object": STR, "choices": {"type": "array"}}, {"usage": {"type": "object"}}
)


ANTHROPIC_ERROR = obj({"type": {"const": "error"}, "error": obj({"type": STR, "message": STR})})
GOOGLE_ERROR = obj({"error": obj({"code": INT, "message": STR, "status": STR})})
TEXT_BLOCKS: Schema = {"type": "array", "items": obj({"type": {"const": "text"}, "text": STR})}
MODEL: Schema = {"type": "string", "minLength": 1}
MESSAGE_LIST: Schema = {
    "type": "array",
    "minItems": 1,
    "items": obj({"role": {"enum": ["user", "assistant"]}, "content": {"anyOf": [STR, TEXT_BLOCKS]}}),
}  # fmt: skip
MESSAGES_OPTIONAL: dict[str, Schema] = {"system": STR, "stream": BOOL, "temperature": {"type": "number", "minimum": 0, "maximum": 1}}  # fmt: skip
MESSAGES_IN = obj(
    {"model": MODEL, "max_tokens": {"type": "integer", "minimum": 1, "maximum": 4096}, "messages": MESSAGE_LIST},
    MESSAGES_OPTIONAL,
)  # fmt: skip
COUNT_IN = obj({"model": MODEL, "messages": MESSAGE_LIST}, {"system": STR})
RESPONSES_IN = obj(
    {"model": MODEL, "input": {"type": "string", "minLength": 1}},
    {
        "instructions": STR,
        "max_output_tokens": {"type": "integer", "minimum": 1, "maximum": 4096},
        "stream": BOOL,
        "store": BOOL,
    },
)
EMBEDDINGS_IN = obj(
    {
        "model": MODEL,
        "input": {"anyOf": [STR, {"type": "array", "minItems": 1, "maxItems": 16, "items": STR}]},
    },
    {"encoding_format": {"enum": ["float", "base64"]}, "dimensions": {"type": "integer", "minimum": 1, "maximum": 64}},
)  # fmt: skip
GEMINI_IN = obj(
    {
        "contents": {
            "type": "array",
            "minItems": 1,
            "items": obj(
                {
                    "role": {"enum": ["user", "model"]},
                    "parts": {"type": "array", "minItems": 1, "items": obj({"text": STR})},
                }
            ),
        }
    },
    {"generationConfig": obj({}, {"maxOutputTokens": {"type": "integer", "minimum": 1, "maximum": 4096}})},
)  # fmt: skip
GEMINI_TARGET = {
    "name": "target", "in": "path", "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}:(generateContent|streamGenerateContent)$"},
}  # fmt: skip


def door_op(
    summary: str, ok: Schema, body: Schema, error: Schema, *, stream: bool = True
) -> Schema:
    """An operation of one of the other doors: its own error shape, maybe a stream."""
    o: Schema = {
        "summary": summary,
        "requestBody": json_body(body),
        "security": [{"bearer": []}],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": ok}}},
            "4XX": {"description": "Bad input, auth, unknown model, quota exhausted", "content": {"application/json": {"schema": error}}},
        },
    }  # fmt: skip
    if stream:
        o["responses"]["200"]["content"]["text/event-stream"] = {"schema": STR}
    return o


def gemini_op() -> Schema:
    o = door_op(
        "Gemini generateContent / streamGenerateContent, routed across keys",
        obj({"candidates": {"type": "array"}}),
        GEMINI_IN,
        GOOGLE_ERROR,
    )
    o["parameters"] = [GEMINI_TARGET]
    return o


def json_body(schema: Schema, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def responses(ok: Schema, *, openai: bool = False, ok_status: str = "200") -> Schema:
    err = ref("OpenAIError" if openai else "ApiError")
    return {
        ok_status: {"description": "OK", "content": {"application/json": {"schema": ok}}},
        "4XX": {
            "description": "Bad input, auth, unknown thing, quota exhausted",
            "content": {"application/json": {"schema": err}},
        },
    }


def op(
    summary: str,
    ok: Schema,
    *,
    body: Schema | None = None,
    params: list[Schema] | None = None,
    auth: bool = False,
    openai: bool = False,
    ok_status: str = "200",
) -> Schema:
    o: Schema = {"summary": summary, "responses": responses(ok, openai=openai, ok_status=ok_status)}
    if body is not None:
        o["requestBody"] = body
    if params:
        o["parameters"] = params
    if auth:
        o["security"] = [{"bearer": []}]
    return o


def refusing(o: Schema, status: str, description: str) -> Schema:
    """``o`` with one refusal documented apart from the generic 4XX."""
    o["responses"][status] = {
        "description": description,
        "content": {"application/json": {"schema": ref("ApiError")}},
    }
    return o


def path_param(name: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": NAME_PATTERN},
    }


def query_param(name: str, lo: int, hi: int) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": lo, "maximum": hi},
    }


def chat_op() -> Schema:
    o = op(
        "OpenAI chat completions, routed across keys",
        CHAT_OUT,
        body=json_body(CHAT_IN),
        openai=True,
        auth=True,
    )
    o["responses"]["200"]["content"]["text/event-stream"] = {"schema": STR}
    return o


PROVIDER_BODY = json_body(closed({"provider": {"type": "string", "minLength": 1, "maxLength": 64}}))
AI = [path_param("ai_name")]
ANY_OK = ok_obj({})


def paths() -> dict[str, Schema]:
    tu = "/api/token-usage"
    return {
        "/api/health": {
            "get": op(
                "Health: healthy, warning (some keys cannot serve) or critical (none can, or the store is unreachable)",
                ok_obj({"status": {"enum": ["healthy", "warning", "critical"]}}),
            )
        },
        "/api/status": {
            "get": op(
                "Providers, states and health",
                ok_obj(
                    {
                        "providers": {"type": "array", "items": ref("ProviderStatus")},
                        "health": obj(
                            {
                                "status": {"enum": ["healthy", "degraded", "critical"]},
                                "message": STR,
                            }
                        ),
                    }
                ),
            )
        },
        "/api/choose": {
            "post": op(
                "The best provider and key; holds a reservation of tokens_estimate",
                ok_obj(
                    {
                        "provider": STR,
                        "api_key": STR,  # masked unless the caller is the admin
                        "key_label": STR,
                        "reservation_id": STR,
                        "remaining_after": NUM,
                        "reason": STR,
                        "key_id": STR,
                    }
                ),
                body=json_body(
                    closed(
                        {"tokens_estimate": {"type": "integer", "minimum": 0, "maximum": 1_000_000}}
                    )
                ),
                auth=True,
            )
        },
        "/api/use": {
            "post": op(
                "Register usage (settles a choose reservation)",
                ok_obj({"message": STR, "tokens_used": INT}),
                body=json_body(
                    closed(
                        {
                            "provider": {"type": "string", "minLength": 1, "maxLength": 64},
                            "tokens_used": {
                                "type": "integer",
                                "minimum": 0,
                                "maximum": 100_000_000,
                            },
                        },
                        {
                            "success": BOOL,
                            "reason": NULLABLE_STR,
                            "key_id": STR,
                            "reservation_id": STR,
                        },
                    )
                ),
                auth=True,
            )
        },
        "/api/add_key": {
            "post": op(
                "Add or update a key (admin)",
                ok_obj({"message": STR, "provider": STR, "key_id": STR, "api_key": STR}),
                body=json_body(
                    closed(
                        {
                            "provider": {"type": "string", "minLength": 1, "maxLength": 64},
                            "api_key": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 1024,
                                "pattern": "^[!-~]+$",
                            },
                        },
                        {"quota_total": {"type": "integer", "minimum": 1, "maximum": 10**13}},
                    )
                ),
                auth=True,
            )
        },
        "/api/history": {
            "get": op(
                "Usage log, newest first",
                ok_obj(
                    {
                        "history": {
                            "type": "array",
                            "items": obj(
                                {
                                    "id": INT,
                                    "provider": STR,
                                    "timestamp": STR,
                                    "tokens_used": INT,
                                    "success": BOOL,
                                    "reason": NULLABLE_STR,
                                }
                            ),
                        }
                    }
                ),
                params=[query_param("limit", 1, 1000)],
            )
        },
        "/api/force_provider": {
            "post": op(
                "Force a provider (admin)",
                ok_obj({"message": STR}),
                body=PROVIDER_BODY,
                auth=True,
            )
        },
        "/api/clear_forced": {
            "post": op(
                "Clear the forced provider (admin)",
                ok_obj({"message": STR}),
                body=json_body(closed({}), required=False),
                auth=True,
            )
        },
        "/api/reset_quota": {
            "post": op(
                "Reset a provider's quotas (admin)",
                ok_obj({"message": STR}),
                body=PROVIDER_BODY,
                auth=True,
            )
        },
        f"{tu}/summary": {
            "get": op(
                "This month's usage (an agent key: its own only)",
                ok_obj(
                    {
                        "month": STR,
                        "total": ref("Measure"),
                        "providers": {"type": "object"},
                        "agents": {"type": "object"},
                    }
                ),
            )
        },
        f"{tu}/ai/{{ai_name}}": {
            "get": op(
                "An agent's usage",
                ok_obj(
                    {
                        "ai_name": STR,
                        "month": STR,
                        "tokens_used": INT,
                        "providers": {"type": "object"},
                    }
                ),
                params=AI,
            )
        },
        f"{tu}/provider-status": {
            "get": op(
                "Recommended provider of every agent",
                ok_obj({"agents": {"type": "object"}}),
            )
        },
        f"{tu}/provider-status/{{ai_name}}": {
            "get": op(
                "An agent's recommended provider",
                ok_obj({"ai_name": STR, "recommended_provider": NULLABLE_STR, "reason": STR}),
                params=AI,
            )
        },
        f"{tu}/emergency-status": {
            "get": op(
                "Warning 80 / critical 95 / emergency 98 %",
                ok_obj(
                    {
                        "status": {"enum": ["normal", "warning", "critical", "emergency"]},
                        "thresholds": {"type": "object"},
                    }
                ),
            )
        },
        f"{tu}/alerts": {
            "get": op(
                "Alerts, newest first",
                ok_obj({"alerts": {"type": "array", "items": ref("Alert")}}),
                params=[query_param("limit", 1, 1000)],
            )
        },
        f"{tu}/test-ai-call": {
            "post": op(
                "One call through the agent's provider order",
                ok_obj(
                    {"ai_name": STR, "provider_info": obj({"provider": STR, "reason": STR})},
                    {"response": NULLABLE_STR},
                ),
                body=json_body(
                    closed(
                        {
                            "ai_name": {"type": "string", "pattern": NAME_PATTERN},
                            "prompt": {"type": "string", "minLength": 1, "maxLength": 2000},
                        },
                        {
                            "preferred_provider": STR,
                            "model": {"type": "string", "minLength": 1, "maxLength": 256},
                            "max_tokens": {"type": "integer", "minimum": 1, "maximum": 1024},
                        },
                    )
                ),
                auth=True,
            )
        },
        f"{tu}/reset/{{ai_name}}": {
            "post": op(
                "Reset an agent's usage (admin)",
                ok_obj({"message": STR}),
                params=AI,
                auth=True,
            )
        },
        f"{tu}/history/{{ai_name}}": {
            "get": op(
                "An agent's monthly history",
                ok_obj({"ai_name": STR, "months": {"type": "array"}}),
                params=[*AI, query_param("months", 1, 60)],
            )
        },
        "/api/agents": {
            "get": op("Agents (admin)", ok_obj({"agents": {"type": "array"}}), auth=True),
            "post": refusing(
                op(
                    "Create an agent; the answer carries its key, once (admin)",
                    ok_obj({"api_key": STR, "agent": {"type": "object"}}),
                    body=json_body(ref("AgentIn")),
                    auth=True,
                    ok_status="201",
                ),
                "409",
                "An agent of this name exists (code agent_exists) or is declared in the config "
                "file (configured_agent); nothing changed. An agent is never replaced: to change "
                "one, delete it, then create it again (it gets a new key).",
            ),
        },
        "/api/agents/{name}": {
            "delete": op(
                "Delete an agent (admin)",
                ok_obj({"message": STR}),
                params=[path_param("name")],
                auth=True,
            )
        },
        "/api/keys": {
            "get": op("Keys, masked (admin)", ok_obj({"keys": {"type": "array"}}), auth=True)
        },
        "/api/keys/{key_id}/reveal": {
            "post": op(
                "A key's secret (admin)",
                ok_obj({"key_id": STR, "api_key": STR}),
                params=[path_param("key_id")],
                auth=True,
            )
        },
        "/api/keys/{key_id}": {
            "delete": op(
                "Remove a key added at runtime (admin)",
                ok_obj({"message": STR}),
                params=[path_param("key_id")],
                auth=True,
            )
        },
        "/api/alerts": {
            "get": op(
                "Alerts, newest first",
                ok_obj({"alerts": {"type": "array", "items": ref("Alert")}}),
                params=[query_param("limit", 1, 1000)],
            )
        },
        # seed 004: quality feedback, session summary, key × model statistics
        "/api/feedback": {
            "post": op(
                "Quality feedback on a request (or a provider + model); moves future choices",
                ok_obj({"message": STR, "updated": {"type": "array"}}),
                body=json_body(
                    closed(
                        {"score": {"type": "number", "minimum": 0, "maximum": 1}},
                        {
                            "request_id": {"type": "string", "minLength": 1, "maxLength": 128},
                            "provider": {"type": "string", "minLength": 1, "maxLength": 64},
                            "model": {"type": "string", "minLength": 1, "maxLength": 256},
                            "success": BOOL,
                        },
                    )
                ),
                auth=True,
            )
        },
        "/api/session-summary": {
            "get": op(
                "Requests, successes, failures, totalTokens, successRate since start",
                ok_obj(
                    {
                        "requests": INT,
                        "successes": INT,
                        "failures": INT,
                        "totalTokens": INT,
                        "successRate": NUM,
                    }
                ),
            )
        },
        "/api/model-stats": {
            "get": op(
                "Statistics per key × model (apiStats fields and the learning view)",
                ok_obj({"stats": {"type": "array"}}),
            )
        },
        # the dashboard
        "/api/dashboard": {
            "get": op(
                "Everything the dashboard shows: status, keys, recommendation, log, charts, forecast, agents, alerts",
                ok_obj({"version": INT}),
                auth=True,
            )
        },
        "/api/events": {
            "get": {
                "summary": "Server-sent events: a new dashboard snapshot whenever something changed (at most 1/s)",
                "security": [{"bearer": []}],
                "responses": {
                    "200": {
                        "description": "an endless text/event-stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "4XX": {
                        "description": "Not allowed",
                        "content": {"application/json": {"schema": ref("ApiError")}},
                    },
                },
            }
        },
        "/api/keys/{key_id}/enable": {
            "post": op(
                "Enable a key (admin); kept across restarts",
                ok_obj({"message": STR}),
                params=[path_param("key_id")],
                auth=True,
            )
        },
        "/api/keys/{key_id}/disable": {
            "post": op(
                "Disable a key (admin); kept across restarts",
                ok_obj({"message": STR}),
                params=[path_param("key_id")],
                auth=True,
            )
        },
        "/v1/chat/completions": {"post": chat_op()},
        "/v1/messages": {
            "post": door_op(
                "Anthropic Messages, routed across keys (native on Anthropic keys)",
                obj({"type": STR, "content": {"type": "array"}}),
                MESSAGES_IN,
                ANTHROPIC_ERROR,
            )
        },
        "/v1/messages/count_tokens": {
            "post": door_op(
                "Anthropic token count (an Anthropic key's, else an estimate)",
                obj({"input_tokens": INT}),
                COUNT_IN,
                ANTHROPIC_ERROR,
                stream=False,
            )
        },
        "/v1/responses": {
            "post": door_op(
                "OpenAI Responses (stateless), routed across keys",
                obj({"id": STR, "object": STR, "output": {"type": "array"}}),
                RESPONSES_IN,
                OPENAI_ERROR,
            )
        },
        "/v1/embeddings": {
            "post": door_op(
                "OpenAI embeddings, routed across the providers that embed",
                obj({"object": STR, "data": {"type": "array"}}),
                EMBEDDINGS_IN,
                OPENAI_ERROR,
                stream=False,
            )
        },
        "/v1beta/models/{target}": {"post": gemini_op()},
        "/v1/models/{target}": {
            "post": gemini_op(),
            "get": op(
                "One model, as listed or as it would be routed (404 if nothing serves it)",
                obj({"id": STR, "object": STR, "owned_by": STR}),
                params=[path_param("target")],
                openai=True,
            ),
        },
        "/v1/models": {
            "get": op(
                "Routes and models served",
                obj({"object": STR, "data": {"type": "array"}}),
                openai=True,
            )
        },
    }


def build_spec(version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "quotaflow",
            "version": version,
            "description": "LLM gateway: /v1 (OpenAI-compatible) and /api (provider switching, token usage per agent, administration).",
        },
        "paths": paths(),
        "components": {
            "schemas": {
                "ApiError": API_ERROR,
                "OpenAIError": OPENAI_ERROR,
                "Limit": LIMIT,
                "KeyStatus": KEY_STATUS,
                "ProviderStatus": PROVIDER_STATUS,
                "Measure": MEASURE,
                "Alert": ALERT,
                "Budget": BUDGET,
                "AgentIn": AGENT_IN,
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "admin token (qfadm-…) or agent key (qf-…)",
                }
            },
        },
    }
