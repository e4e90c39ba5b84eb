"""The route table, and only that."""

from __future__ import annotations

from aiohttp import web

from quotaflow.web import health_api, openai_api


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", openai_api.chat_completions)
    app.router.add_get("/v1/models", openai_api.list_models)
    app.router.add_get("/api/health", health_api.health)
