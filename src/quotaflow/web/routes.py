"""The route table, and only that."""

from __future__ import annotations

from aiohttp import web

from quotaflow.web import (
    admin_api,
    dashboard,
    dashboard_api,
    events,
    feedback_api,
    health_api,
    openai_api,
    openapi,
    switcher_api,
    token_usage_api,
)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", openai_api.chat_completions)
    app.router.add_get("/v1/models", openai_api.list_models)
    app.router.add_get("/api/health", health_api.health)
    # seed 000
    app.router.add_get("/api/status", switcher_api.status)
    app.router.add_post("/api/choose", switcher_api.choose)
    app.router.add_post("/api/use", switcher_api.use)
    app.router.add_post("/api/add_key", switcher_api.add_key)
    app.router.add_get("/api/history", switcher_api.history)
    app.router.add_post("/api/force_provider", switcher_api.force_provider)
    app.router.add_post("/api/clear_forced", switcher_api.clear_forced)
    app.router.add_post("/api/reset_quota", switcher_api.reset_quota)
    # seed 003
    tu = "/api/token-usage"
    app.router.add_get(f"{tu}/summary", token_usage_api.summary)
    app.router.add_get(f"{tu}/ai/{{ai_name}}", token_usage_api.ai_usage)
    app.router.add_get(f"{tu}/provider-status", token_usage_api.provider_status_all)
    app.router.add_get(f"{tu}/provider-status/{{ai_name}}", token_usage_api.provider_status)
    app.router.add_get(f"{tu}/emergency-status", token_usage_api.emergency_status)
    app.router.add_get(f"{tu}/alerts", token_usage_api.alerts)
    app.router.add_post(f"{tu}/test-ai-call", token_usage_api.test_ai_call)
    app.router.add_post(f"{tu}/reset/{{ai_name}}", token_usage_api.reset)
    app.router.add_get(f"{tu}/history/{{ai_name}}", token_usage_api.history)
    # seed 004 (issue 7): quality feedback, session summary, key × model statistics
    app.router.add_post("/api/feedback", feedback_api.feedback)
    app.router.add_get("/api/session-summary", feedback_api.session_summary)
    app.router.add_get("/api/model-stats", feedback_api.model_stats)
    # administration
    app.router.add_get("/api/agents", admin_api.list_agents)
    app.router.add_post("/api/agents", admin_api.create_agent)
    app.router.add_delete("/api/agents/{name}", admin_api.delete_agent)
    app.router.add_get("/api/keys", admin_api.list_keys)
    app.router.add_post("/api/keys/{key_id}/reveal", admin_api.reveal_key)
    app.router.add_delete("/api/keys/{key_id}", admin_api.delete_key)
    app.router.add_get("/api/alerts", admin_api.list_alerts)
    app.router.add_get("/openapi.json", openapi.openapi_json)
    # dashboard (issue 6): the page, its assets, its snapshot and live stream, key switches
    app.router.add_get("/", dashboard.index)
    app.router.add_get("/static/{name}", dashboard.static_file)
    app.router.add_get("/api/dashboard", dashboard_api.snapshot)
    app.router.add_get("/api/events", events.stream)
    app.router.add_post("/api/keys/{key_id}/enable", dashboard_api.enable_key)
    app.router.add_post("/api/keys/{key_id}/disable", dashboard_api.disable_key)
    events.install(app)  # the snapshot hub the streams share; it ends them on shutdown
