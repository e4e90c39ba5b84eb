"""The shape of ``quotaflow.yaml``, validated with field-named errors.

Minimal file::

    providers:
      - name: openai                 # a preset name, or any name with protocol + base_url
        keys:
          - secret: ${OPENAI_API_KEY}
            limits: [{metric: tokens, window: day, amount: 200000}]
    routes:
      - name: smart
        deployments:
          - {provider: openai, model: gpt-4o-mini, tier: cheap}
          - {provider: openai, model: gpt-4o, tier: capable}
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from quotaflow.config.urls import check_base_url, check_proxy_url
from quotaflow.engine.windows import Window, parse_window

Plan = Literal["free", "paid"]
StrategyName = Literal["priority", "headroom", "cost", "latency", "weighted", "learned", "bandit"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitSpec(_Model):
    """A quota: at most ``amount`` of ``metric`` per ``window``."""

    metric: Literal["tokens", "requests", "cost"] = Field(
        default="tokens", description="What is counted: tokens, requests, or cost in USD."
    )
    window: str = Field(
        default="month",
        description="minute, hour, day, month (calendar, in settings.timezone), once (never "
        "resets) or 'rolling N s' (a sliding window of N seconds).",
    )
    amount: float = Field(ge=0, description="The most the window may hold.")

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        parse_window(v)  # raises ValueError with the accepted forms
        return v

    @property
    def parsed_window(self) -> Window:
        return parse_window(self.window)


class SourcedLimitSpec(LimitSpec):
    """A limit the loader made rather than the user wrote: it says where it came from
    (``env override`` for ``<PROVIDER>_LIMIT``, …)."""

    source: str = "config"


class KeySpec(_Model):
    """One API key of a provider."""

    id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="Stable name of the key in the ledger, headers and dashboard; default: "
        "the provider name and the key's position.",
    )
    secret: str = Field(min_length=1, description="The API key; use ${ENV_VAR}.")
    label: str | None = Field(default=None, description="A human name shown beside the id.")
    priority: int = Field(default=0, description="Lower goes first (strategy: priority).")
    weight: float = Field(default=1.0, gt=0, description="Share of traffic (strategy: weighted).")
    enabled: bool = Field(default=True, description="false: configured but never picked.")
    limits: list[LimitSpec] | None = Field(
        default=None, description="This key's quotas; default: the provider's key_limits."
    )
    plan: Plan | None = Field(
        default=None,
        description="free: the preset's free-tier limits apply when no limits are configured; "
        "default: the provider's plan (paid unless said otherwise), which has no gateway-side cap.",
    )


class ModelSpec(_Model):
    """A model a provider serves (or just its name as a string)."""

    name: str = Field(min_length=1, description="The provider's model name.")
    tier: Literal["cheap", "capable"] | None = Field(
        default=None, description="Picked for complexity 'simple' (cheap) or 'complex' (capable)."
    )
    context_window: int = Field(default=128_000, gt=0, description="Tokens of prompt + answer.")
    max_output: int = Field(default=4_096, gt=0, description="Most tokens one answer may have.")
    input: float | None = Field(default=None, ge=0, description="USD per million prompt tokens.")
    output: float | None = Field(
        default=None, ge=0, description="USD per million completion tokens."
    )
    cached: float | None = Field(
        default=None, ge=0, description="USD per million cached prompt tokens."
    )
    kind: Literal["chat", "embedding"] | None = Field(
        default=None, description="chat or embedding; default: the preset's, else chat."
    )


class ProviderSpec(_Model):
    """An LLM provider: a preset (openai, anthropic, gemini, groq, …) or any endpoint speaking
    one of the three protocols."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="The provider's name.")
    preset: str | None = Field(
        default=None,
        description="Base URL, protocol, models, prices and free-tier limits to start from; "
        "default: the preset named like the provider, if any.",
    )
    protocol: Literal["openai", "anthropic", "gemini"] | None = Field(
        default=None, description="Wire format; needed without a preset."
    )
    base_url: str | None = Field(default=None, description="Needed without a preset.")
    models: list[ModelSpec | str] | None = Field(
        default=None, description="Models served; default: the preset's."
    )
    model_patterns: list[str] | None = Field(
        default=None,
        description="Names of models it serves beyond models (fnmatch, e.g. 'gpt-*'); "
        "default: the preset's.",
    )
    keys: list[KeySpec] = Field(default_factory=list, description="The provider's API keys.")
    key_limits: list[LimitSpec] | None = Field(
        default=None, description="Quotas of each key without its own; default: by plan."
    )
    plan: Plan | None = Field(
        default=None,
        description="free or paid; default: <PROVIDER>_PLAN from the environment, else paid.",
    )
    limits: list[LimitSpec] = Field(
        default_factory=list, description="Quotas shared by all keys of the provider."
    )
    priority: int | None = Field(default=None, description="Lower goes first.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers sent upstream."
    )
    timeout_s: float | None = Field(
        default=None, gt=0, description="Request timeout; default: settings.request_timeout_s."
    )
    ttfb_timeout_s: float | None = Field(
        default=None, gt=0, description="First-byte timeout; default: settings.ttfb_timeout_s."
    )
    stream_max_s: float | None = Field(
        default=None, gt=0, description="Longest stream; default: settings.stream_max_s."
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return check_base_url(v) if v is not None else None


class DeploymentSpec(_Model):
    """One provider × model a route may send a request to."""

    provider: str = Field(description="A configured provider's name.")
    model: str = Field(description="A model that provider serves.")
    tier: Literal["cheap", "capable"] | None = Field(
        default=None, description="Overrides the model's tier on this route."
    )
    weight: float = Field(default=1.0, gt=0, description="Share of traffic (strategy: weighted).")
    priority: int | None = Field(default=None, description="Lower goes first.")


class RouteSpec(_Model):
    """A name clients send as ``model``, served by several deployments."""

    name: str = Field(min_length=1, max_length=128, description="What clients send as model.")
    deployments: list[DeploymentSpec] = Field(
        min_length=1, description="Where requests to this route may go."
    )
    limits: list[LimitSpec] = Field(default_factory=list, description="Quotas of the route.")
    strategy: StrategyName | None = Field(
        default=None, description="Overrides settings.strategy on this route."
    )
    fallback_route: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Where a request goes when a provider's content filter refuses it (a route "
        "or a served model name); unset: the refusal is returned as is.",
    )


class ServerSpec(_Model):
    """The HTTP server and who may call what."""

    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=5050, ge=0, le=65535, description="Port to listen on.")
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, gt=0, description="Largest /v1 request body."
    )
    trust_local: bool = Field(
        default=False,
        description="/api needs no admin token (local use only; refused unless bound to loopback).",
    )
    require_agent_keys: bool = Field(
        default=False, description="/v1 needs an agent key even on loopback."
    )
    allow_agent_header: bool = Field(
        default=True,
        description="X-Quotaflow-Agent or the OpenAI 'user' field may name the calling agent.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Host names accepted besides loopback."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="CORS origins allowed besides localhost."
    )
    api_max_body_bytes: int = Field(default=64 * 1024, gt=0, description="Largest /api body.")
    idle_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A client connection that has not sent a whole request head within this "
        "many seconds, or that sits idle this long between requests, is closed.",
    )
    dashboard_read_only_on_loopback: bool = Field(
        default=False,
        description="Show the dashboard without the admin token to callers on loopback "
        "(actions still need the token).",
    )


class LearnedWeights(_Model):
    """Weights of the learned score: reliability, speed, quality and recency (divided by their
    sum)."""

    reliability: float = Field(default=0.4, ge=0, description="Decayed success rate.")
    speed: float = Field(default=0.3, ge=0, description="1 / (1 + latency / reference).")
    quality: float = Field(default=0.2, ge=0, description="Mean feedback score.")
    recency: float = Field(default=0.1, ge=0, description="How recently the key last succeeded.")

    @model_validator(mode="after")
    def _some_weight(self) -> LearnedWeights:
        if self.reliability + self.speed + self.quality + self.recency <= 0:
            raise ValueError("learned_weights: at least one weight must be above 0")
        return self


class SettingsSpec(_Model):
    """How requests are routed, retried and accounted."""

    timezone: str = Field(default="UTC", description="IANA zone where calendar windows reset.")
    strategy: StrategyName = Field(default="headroom", description="How the key is picked.")
    max_attempts: int = Field(
        default=5, ge=1, le=20, description="Upstream attempts per request, fallbacks included."
    )
    max_wait_s: float = Field(
        default=5.0,
        ge=0,
        le=600,
        description="When every quota is full, wait at most this long in all for a window "
        "to free before answering 429 (a request whose client disconnects meanwhile is "
        "dropped, never sent upstream).",
    )
    request_timeout_s: float = Field(default=120.0, gt=0, description="Upstream request timeout.")
    connect_timeout_s: float = Field(default=5.0, gt=0, description="Upstream connect timeout.")
    proxy: str | None = Field(
        default=None,
        description="Outbound proxy for provider calls: unset follows HTTPS_PROXY/HTTP_PROXY/"
        "NO_PROXY; a URL (http://[user:password@]host:port) replaces them (NO_PROXY still "
        "applies); 'none' connects directly whatever the environment says.",
    )
    http_client: Literal["fast", "aiohttp"] = Field(
        default="fast",
        description="The HTTP client providers are called with: quotaflow's own (fast) or "
        "aiohttp's (same behaviour, more CPU per request).",
    )
    ttfb_timeout_s: float = Field(
        default=8.0,
        gt=0,
        description="An attempt whose first byte has not come within this gives way to the "
        "next key: a hung key costs this, not the request.",
    )
    stream_max_s: float = Field(
        default=900.0, gt=0, description="A stream's total duration, at most."
    )
    shutdown_grace_s: float = Field(
        default=30.0, ge=0, description="On SIGTERM, drain requests this long, then end."
    )
    max_tokens_cap: int = Field(
        default=1_000_000, gt=0, description="A larger max_tokens is refused as absurd."
    )
    min_completion_tokens: int = Field(
        default=16,
        ge=1,
        description="A key with less headroom than this for the answer is skipped.",
    )
    rate_saturation: float = Field(
        default=0.8, gt=0, le=1, description="Avoid a key above this share of a rate limit."
    )
    warning: float = Field(
        default=0.8, gt=0, le=1, description="Share of a limit shown as warning."
    )
    critical: float = Field(
        default=0.9, gt=0, le=1, description="Share of a limit shown as critical."
    )
    alert_levels: list[float] = Field(
        default_factory=lambda: [0.75, 0.9, 0.95],
        description="Shares of a limit that raise an alert, once per crossing.",
    )
    preferred_providers: list[str] = Field(
        default_factory=lambda: ["anthropic", "claude"],
        description="Providers whose keys get preferred_bonus in routing scores.",
    )
    preferred_bonus: float = Field(default=10.0, description="Score bonus of preferred providers.")
    cooldown_s: float = Field(
        default=30.0, gt=0, description="How long a burst of failures opens a key's circuit."
    )
    failure_threshold: int = Field(
        default=3, ge=1, description="Consecutive failures that open the circuit."
    )
    ledger_synchronous: Literal["OFF", "NORMAL", "FULL"] = Field(
        default="NORMAL", description="SQLite's synchronous mode for the ledger."
    )
    ledger_retention_days: float | None = Field(
        default=None,
        ge=1,
        description="Ledger rows older than this many days are folded into the ledger's daily "
        "and 15-minute totals and deleted (every report's totals stay as they were; the rows "
        "themselves, the history and latency samples of that time go); checked hourly by the "
        "server, or run `quotaflow compact`. Unset: rows are kept for ever.",
    )
    choose_ttl_s: float = Field(
        default=600.0, gt=0, le=86_400, description="Lifetime of an /api/choose reservation."
    )
    emergency_levels: list[float] = Field(
        default_factory=lambda: [0.80, 0.95, 0.98],
        description="Shares of a budget for the warning, critical and emergency status.",
    )
    learned_weights: LearnedWeights = Field(
        default_factory=LearnedWeights, description="Weights of strategy: learned."
    )
    learning_half_life_s: float = Field(
        default=60.0, gt=0, description="Success and failure evidence halves this often."
    )
    learning_window: float = Field(
        default=12.0, ge=2, description="Recent outcomes the evidence holds at most."
    )
    learned_speed_reference_ms: float = Field(
        default=1000.0, gt=0, description="Latency at which the speed score is 0.5."
    )
    learned_recency_tau_s: float = Field(
        default=300.0, gt=0, description="recency = exp(-age of last success / tau)."
    )
    bandit_exploration: float = Field(
        default=0.02, ge=0, le=0.2, description="Share of forced exploration (strategy: bandit)."
    )
    bandit_confidence: float = Field(
        default=3.0, ge=1, le=20, description="Weight of the evidence in the bandit's draws."
    )
    stats_flush_s: float = Field(
        default=30.0, gt=0, description="Key × model statistics are saved this often."
    )
    unpriced: Literal["refuse", "highest", "zero"] = Field(
        default="highest",
        description="A model with no known price: highest charges the highest price of its "
        "provider (flagged as estimated), zero books it at $0, refuse refuses requests for it.",
    )
    provider_order: list[str] = Field(
        default_factory=list,
        description="Primary then fallback providers for callers whose agent declares none "
        "(ENABLE_OPENAI_FALLBACK sets anthropic, then openai).",
    )
    switch_threshold: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="Used share of the primary at which provider_order moves to the next "
        "(OPENAI_FALLBACK_THRESHOLD).",
    )
    model_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Model names nothing configured serves ('claude-*', 'gpt-5*'): a name "
        "pattern -> the route or model that answers them instead (the first that matches).",
    )

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, v: str | None) -> str | None:
        return check_proxy_url(v) if v is not None else None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {v!r} (use an IANA name such as 'Europe/Paris')"
            ) from exc
        return v

    @model_validator(mode="after")
    def _thresholds(self) -> SettingsSpec:
        if not self.warning < self.critical:
            raise ValueError("warning must be below critical")
        e = self.emergency_levels
        if len(e) != 3 or not 0 < e[0] < e[1] < e[2] <= 1:
            raise ValueError(
                "emergency_levels: three increasing shares in (0, 1], e.g. [0.8, 0.95, 0.98]"
            )
        if any(not 0 < lv <= 1 for lv in self.alert_levels):
            raise ValueError("alert_levels: shares in (0, 1], e.g. [0.75, 0.9, 0.95]")
        return self


class StorageSpec(_Model):
    """Where state lives. Embedded by default (memory counters, SQLite ledger); several
    replicas share Redis counters and a PostgreSQL ledger (docs/scale-out.md)."""

    counters: str = Field(default="memory", description="'memory' or redis://host:6379/0.")
    ledger: str = Field(default="sqlite", description="'sqlite' or postgresql://user@host:5432/db.")
    key_prefix: str = Field(
        default="qf:", min_length=1, max_length=64, description="Prefix of the Redis keys."
    )
    replica_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="This replica's name."
    )
    hold_ttl_s: float = Field(
        default=300.0, gt=0, description="A dead replica's reservations are charged after this."
    )
    stale_after_s: float = Field(
        default=900.0, gt=0, description="Pending ledger rows of a vanished replica expire after."
    )
    on_counter_failure: Literal["fail_closed"] = Field(
        default="fail_closed", description="503 while Redis is unreachable: never overshoot."
    )

    @field_validator("counters")
    @classmethod
    def _counters(cls, v: str) -> str:
        if v != "memory" and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("counters: 'memory' or a redis:// URL (e.g. redis://127.0.0.1:6379/0)")
        return v

    @field_validator("ledger")
    @classmethod
    def _ledger(cls, v: str) -> str:
        if v != "sqlite" and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "ledger: 'sqlite' or a postgresql:// URL (e.g. postgresql://postgres@127.0.0.1/quotaflow)"
            )
        return v

    @model_validator(mode="after")
    def _shared_counters_need_a_shared_ledger(self) -> StorageSpec:
        # Counters reloaded after a Redis restart come from the ledger: from one replica's own
        # SQLite file they would miss every other replica's usage, and quotas would overshoot.
        if self.counters != "memory" and self.ledger == "sqlite":
            raise ValueError(
                "counters: shared counters (Redis) need a shared ledger: set ledger to a "
                "postgresql:// URL, or use counters: memory for a single server"
            )
        return self


class AgentBudgetSpec(LimitSpec):
    """A budget of an agent."""

    provider: str | None = Field(default=None, description="A budget on one provider only.")


class AgentSpec(_Model):
    """A caller of the gateway: budgets, provider order, rate limits, token cap."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$", description="The agent's name.")
    key: str | None = Field(
        default=None,
        pattern=r"^qf-[A-Za-z0-9_-]{16,128}$",
        description="Its virtual key (qf-…), sent as the API key.",
    )
    budgets: list[AgentBudgetSpec] = Field(default_factory=list, description="Its quotas.")
    providers: list[str] = Field(
        default_factory=list, description="Provider order: primary first, then fallbacks."
    )
    switch_threshold: float = Field(
        default=0.95,
        gt=0,
        le=1,
        description="Move to the next provider when this share of a budget is used.",
    )
    requests_per_minute: int | None = Field(default=None, ge=1, description="Rate limit.")
    requests_per_day: int | None = Field(default=None, ge=1, description="Rate limit.")
    max_tokens_per_request: int | None = Field(
        default=None, ge=1, description="Cap of max_tokens in one request."
    )
    default_max_tokens: int | None = Field(
        default=1024, ge=1, description="max_tokens when a request sets none."
    )
    admin: bool = Field(default=False, description="Its key may do what the admin token does.")


NOTIFY_EVENTS = (
    "threshold",
    "depleted",
    "key_invalid",
    "provider_failing",
    "all_failed",
    "recovered",
)
WEBHOOK_URL_ENV = "QUOTAFLOW_WEBHOOK_URL"


class NotifySpec(_Model):
    """An alert webhook: where alerts are POSTed, in which format, signed with what."""

    url: str = Field(description="Where alerts are POSTed (http:// or https://).")
    format: Literal["json", "slack"] = Field(
        default="json", description="json: the alert object; slack: a Slack message."
    )
    secret: str | None = Field(
        default=None,
        description="Signs each body: X-Quotaflow-Signature: sha256=<HMAC-SHA256 of the body>.",
    )
    events: list[str] = Field(
        default_factory=lambda: list(NOTIFY_EVENTS),
        description=f"Which alerts to send; default all: {', '.join(NOTIFY_EVENTS)}.",
    )
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="Timeout of one POST.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")) or len(v) < 10:
            raise ValueError("an http:// or https:// URL")
        return v

    @field_validator("events")
    @classmethod
    def _known_events(cls, v: list[str]) -> list[str]:
        bad = sorted(set(v) - set(NOTIFY_EVENTS))
        if bad:
            raise ValueError(f"unknown event(s) {bad}; known: {', '.join(NOTIFY_EVENTS)}")
        if not v:
            raise ValueError("name at least one event (or leave events out for all)")
        return v


class ConfigSpec(_Model):
    """quotaflow.yaml."""

    agents: list[AgentSpec] = Field(default_factory=list, description="Callers and budgets.")
    server: ServerSpec = Field(default_factory=ServerSpec, description="The HTTP server.")
    settings: SettingsSpec = Field(default_factory=SettingsSpec, description="Routing.")
    providers: list[ProviderSpec] = Field(default_factory=list, description="Providers and keys.")
    routes: list[RouteSpec] = Field(default_factory=list, description="Named routes.")
    limits: list[LimitSpec] = Field(default_factory=list, description="Global quotas.")
    storage: StorageSpec = Field(default_factory=StorageSpec, description="Where state lives.")
    notify: list[NotifySpec] = Field(default_factory=list, description="Alert webhooks.")

    @model_validator(mode="after")
    def _references(self) -> ConfigSpec:
        names = [p.name for p in self.providers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"providers: duplicate name(s) {sorted(dup)}")
        for i, r in enumerate(self.routes):
            for j, d in enumerate(r.deployments):
                if d.provider not in names:
                    raise ValueError(
                        f"routes.{i}.deployments.{j}.provider: unknown provider {d.provider!r} "
                        f"(configured: {', '.join(names) or 'none'})"
                    )
        routes = [r.name for r in self.routes]
        if len(set(routes)) != len(routes):
            raise ValueError("routes: duplicate route names")
        agents = [a.name for a in self.agents]
        if len(set(agents)) != len(agents):
            raise ValueError("agents: duplicate agent names")
        return self
