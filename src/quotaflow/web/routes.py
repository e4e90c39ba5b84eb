"""The route table, and only that.

``/v1`` and ``/api/health`` are served by modules imported with the app. Every other handler
is named by module and function and imported on its first request (:func:`lazy`), so the
server is ready before the dashboard, the reports and the management handlers are loaded.
"""

from __future__ import annotations

from importlib import import_module

from aiohttp import web

from quotaflow.web.api import health, openai
from quotaflow.web.dashboard import hub
from quotaflow.web.errors import Handler

LAZY_TARGETS: set[tuple[str, str]] = set()  # every (module, function) named to lazy()


def lazy(module: str, name: str) -> Handler:
    """The handler ``quotaflow.web.<module>.<name>``, imported when it first serves."""
    LAZY_TARGETS.add((module, name))
    target: Handler | None = None

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal target
        if target is None:
            target = getattr(import_module(f"quotaflow.web.{module}"), name)
        return await target(request)

    handler.__name__ = name
    handler.__qualname__ = f"{module}.{name}"
    handler.__module__ = f"quotaflow.web.{module}"
    return handler


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", openai.chat_completions)
    app.router.add_get("/v1/models", openai.list_models)
    # the other doors onto the same gateway
    app.router.add_post("/v1/messages", lazy("api.messages", "create_message"))
    app.router.add_post("/v1/messages/count_tokens", lazy("api.messages", "count_tokens"))
    app.router.add_post("/v1/embeddings", lazy("api.embeddings", "create_embedding"))
    app.router.add_post("/v1/responses", lazy("api.responses", "create_response"))
    app.router.add_post("/v1beta/models/{target}", lazy("api.gemini", "generate"))
    app.router.add_post("/v1/models/{target}", lazy("api.gemini", "generate"))
    app.router.add_get("/v1/models/{target:.+}", openai.retrieve_model)
    app.router.add_get("/api/health", health.health)
    app.router.add_get("/livez", health.livez)
    app.router.add_get("/readyz", health.readyz)
    # seed 000
    app.router.add_get("/api/status", lazy("api.switcher", "status"))
    app.router.add_post("/api/choose", lazy("api.switcher", "choose"))
    app.router.add_post("/api/use", lazy("api.switcher", "use"))
    app.router.add_post("/api/add_key", lazy("api.switcher", "add_key"))
    app.router.add_get("/api/history", lazy("api.switcher", "history"))
    app.router.add_post("/api/force_provider", lazy("api.switcher", "force_provider"))
    app.router.add_post("/api/clear_forced", lazy("api.switcher", "clear_forced"))
    app.router.add_post("/api/reset_quota", lazy("api.switcher", "reset_quota"))
    # seed 003
    tu = "/api/token-usage"
    app.router.add_get(f"{tu}/summary", lazy("api.token_usage", "summary"))
    app.router.add_get(f"{tu}/ai/{{ai_name}}", lazy("api.token_usage", "ai_usage"))
    app.router.add_get(f"{tu}/provider-status", lazy("api.token_usage", "provider_status_all"))
    app.router.add_get(
        f"{tu}/provider-status/{{ai_name}}", lazy("api.token_usage", "provider_status")
    )
    app.router.add_get(f"{tu}/emergency-status", lazy("api.token_usage", "emergency_status"))
    app.router.add_get(f"{tu}/alerts", lazy("api.token_usage", "alerts"))
    app.router.add_post(f"{tu}/test-ai-call", lazy("api.token_usage", "test_ai_call"))
    app.router.add_post(f"{tu}/reset/{{ai_name}}", lazy("api.token_usage", "reset"))
    app.router.add_get(f"{tu}/history/{{ai_name}}", lazy("api.token_usage", "history"))
    # seed 004: quality feedback, session summary, key × model statistics
    app.router.add_post("/api/feedback", lazy("api.feedback", "feedback"))
    app.router.add_get("/api/session-summary", lazy("api.feedback", "session_summary"))
    app.router.add_get("/api/model-stats", lazy("api.feedback", "model_stats"))
    # administration
    app.router.add_get("/api/agents", lazy("api.admin", "list_agents"))
    app.router.add_post("/api/agents", lazy("api.admin", "create_agent"))
    app.router.add_delete("/api/agents/{name}", lazy("api.admin", "delete_agent"))
    app.router.add_get("/api/keys", lazy("api.admin", "list_keys"))
    app.router.add_post("/api/keys/{key_id}/reveal", lazy("api.admin", "reveal_key"))
    app.router.add_delete("/api/keys/{key_id}", lazy("api.admin", "delete_key"))
    app.router.add_get("/api/alerts", lazy("api.admin", "list_alerts"))
    app.router.add_get("/openapi.json", lazy("api.openapi", "openapi_json"))
    app.router.add_get("/metrics", lazy("api.metrics", "metrics"))
    # dashboard: the page, its assets, its snapshot and live stream, key switches
    app.router.add_get("/", lazy("dashboard.page", "index"))
    app.router.add_get("/static/{name}", lazy("dashboard.page", "static_file"))
    app.router.add_get("/api/dashboard", lazy("dashboard.handlers", "snapshot"))
    app.router.add_get("/api/events", hub.stream)
    app.router.add_post("/api/keys/{key_id}/enable", lazy("dashboard.handlers", "enable_key"))
    app.router.add_post("/api/keys/{key_id}/disable", lazy("dashboard.handlers", "disable_key"))
    hub.install(app)  # the snapshot hub the streams share; it ends them on shutdown
