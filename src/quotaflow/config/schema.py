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
    metric: Literal["tokens", "requests", "cost"] = "tokens"
    window: str = "month"
    amount: float = Field(ge=0)

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
    (``env override`` for seed 002's ``<PROVIDER>_LIMIT``, …)."""

    source: str = "config"


class KeySpec(_Model):
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    secret: str = Field(min_length=1)
    label: str | None = None
    priority: int = 0  # lower goes first (seed 002)
    weight: float = Field(default=1.0, gt=0)
    enabled: bool = True
    limits: list[LimitSpec] | None = None  # None: the provider's key_limits
    # "free": the preset's free-tier limits apply when no limits are configured; None: the
    # provider's plan ("paid" unless said otherwise), which has no gateway-side cap.
    plan: Plan | None = None


class ModelSpec(_Model):
    name: str = Field(min_length=1)
    tier: Literal["cheap", "capable"] | None = None
    context_window: int = Field(default=128_000, gt=0)
    max_output: int = Field(default=4_096, gt=0)
    input: float | None = Field(default=None, ge=0)  # USD per million tokens
    output: float | None = Field(default=None, ge=0)
    cached: float | None = Field(default=None, ge=0)
    kind: Literal["chat", "embedding"] | None = None  # None: the preset's, else chat


class ProviderSpec(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    preset: str | None = None  # defaults to name when a preset of that name exists
    protocol: Literal["openai", "anthropic", "gemini"] | None = None
    base_url: str | None = None
    models: list[ModelSpec | str] | None = None  # None: the preset's
    # Names of models it serves beyond ``models`` (fnmatch, e.g. "gpt-*"); None: the preset's
    model_patterns: list[str] | None = None
    keys: list[KeySpec] = Field(default_factory=list)
    key_limits: list[LimitSpec] | None = None  # defaults for each key; None: by plan
    plan: Plan | None = None  # None: <PROVIDER>_PLAN from the environment, else "paid"
    limits: list[LimitSpec] = Field(default_factory=list)  # shared by all keys of the provider
    priority: int | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float | None = Field(default=None, gt=0)
    ttfb_timeout_s: float | None = Field(default=None, gt=0)  # None: settings.ttfb_timeout_s
    stream_max_s: float | None = Field(default=None, gt=0)  # None: settings.stream_max_s

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return check_base_url(v) if v is not None else None


class DeploymentSpec(_Model):
    provider: str
    model: str
    tier: Literal["cheap", "capable"] | None = None
    weight: float = Field(default=1.0, gt=0)
    priority: int | None = None


class RouteSpec(_Model):
    name: str = Field(min_length=1, max_length=128)
    deployments: list[DeploymentSpec] = Field(min_length=1)
    limits: list[LimitSpec] = Field(default_factory=list)
    strategy: StrategyName | None = None
    # Where a request goes when a provider's content filter refuses it on this route (a
    # route name or a served model name); None: the refusal is returned as is.
    fallback_route: str | None = Field(default=None, min_length=1, max_length=128)


class ServerSpec(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=5050, ge=0, le=65535)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # Management API: who may call what.
    trust_local: bool = False  # seed 000's no-auth local mode; refused unless bound to loopback
    require_agent_keys: bool = False  # /v1 needs an agent key even on loopback
    allow_agent_header: bool = True  # X-Quotaflow-Agent / OpenAI ``user`` name the agent
    allowed_hosts: list[str] = Field(default_factory=list)  # Host names accepted besides loopback
    cors_origins: list[str] = Field(default_factory=list)  # extra CORS origins besides localhost
    api_max_body_bytes: int = Field(default=64 * 1024, gt=0)  # cap of /api request bodies
    # A client connection that has not sent a whole request head within this many seconds,
    # or that sits idle this long between requests, is closed (half-open clients cost a
    # descriptor each).
    idle_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # The dashboard: show it without the admin token to callers on loopback
    # (read-only: actions still need the token).
    dashboard_read_only_on_loopback: bool = False


class LearnedWeights(_Model):
    """Seed 004's score weights: 0.4·reliability + 0.3·speed + 0.2·quality + 0.1·recency."""

    reliability: float = Field(default=0.4, ge=0)
    speed: float = Field(default=0.3, ge=0)
    quality: float = Field(default=0.2, ge=0)
    recency: float = Field(default=0.1, ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> LearnedWeights:
        if self.reliability + self.speed + self.quality + self.recency <= 0:
            raise ValueError("learned_weights: at least one weight must be above 0")
        return self


class SettingsSpec(_Model):
    timezone: str = "UTC"
    strategy: StrategyName = "headroom"
    max_attempts: int = Field(default=5, ge=1, le=20)
    max_wait_s: float = Field(default=5.0, ge=0, le=600)  # wait for a window to reset, at most
    request_timeout_s: float = Field(default=120.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    # Outbound proxy for provider calls: None follows HTTPS_PROXY/HTTP_PROXY/NO_PROXY, a URL
    # (http://[user:password@]host:port) replaces them (NO_PROXY still applies), "none"
    # connects directly whatever the environment says.
    proxy: str | None = None
    # The HTTP client providers are called with: "fast" (quotaflow's own, the default) or
    # "aiohttp" (aiohttp's client: same behaviour, more CPU per request).
    http_client: Literal["fast", "aiohttp"] = "fast"
    # An attempt whose first byte (a stream's first event, a plain answer's head) has not
    # come within this gives way to the next key: a hung key costs this, not the request.
    ttfb_timeout_s: float = Field(default=8.0, gt=0)
    stream_max_s: float = Field(default=900.0, gt=0)  # a stream's total duration, at most
    shutdown_grace_s: float = Field(default=30.0, ge=0)  # SIGTERM: drain this long, then end
    max_tokens_cap: int = Field(default=1_000_000, gt=0)  # larger max_tokens is refused as absurd
    min_completion_tokens: int = Field(default=16, ge=1)
    rate_saturation: float = Field(
        default=0.8, gt=0, le=1
    )  # seed 001: avoid a key above 80 % of a rate limit
    warning: float = Field(default=0.8, gt=0, le=1)
    critical: float = Field(default=0.9, gt=0, le=1)
    alert_levels: list[float] = Field(default_factory=lambda: [0.75, 0.9, 0.95])
    preferred_providers: list[str] = Field(default_factory=lambda: ["anthropic", "claude"])
    preferred_bonus: float = 10.0  # seed 000: +10 for the preferred provider
    cooldown_s: float = Field(default=30.0, gt=0)  # after a 5xx burst opens the circuit
    failure_threshold: int = Field(default=3, ge=1)  # consecutive failures that open the circuit
    ledger_synchronous: Literal["OFF", "NORMAL", "FULL"] = "NORMAL"
    choose_ttl_s: float = Field(default=600.0, gt=0, le=86_400)  # /api/choose reservation lifetime
    # seed 003's emergency status: warning 80 %, critical 95 %, emergency 98 %
    emergency_levels: list[float] = Field(default_factory=lambda: [0.80, 0.95, 0.98])
    # the learning strategies ("learned", "bandit") and the key × model statistics
    learned_weights: LearnedWeights = Field(default_factory=LearnedWeights)
    learning_half_life_s: float = Field(default=60.0, gt=0)  # evidence halves this often
    learning_window: float = Field(default=12.0, ge=2)  # recent outcomes the evidence holds
    learned_speed_reference_ms: float = Field(default=1000.0, gt=0)  # speed 0.5 at this latency
    learned_recency_tau_s: float = Field(default=300.0, gt=0)  # recency = exp(-age / tau)
    bandit_exploration: float = Field(default=0.02, ge=0, le=0.2)  # share of forced exploration
    bandit_confidence: float = Field(default=3.0, ge=1, le=20)  # evidence weight in the draws
    stats_flush_s: float = Field(default=30.0, gt=0)  # key × model stats saved this often
    # Seed 003's primary → fallback order for callers whose agent declares none
    # (ENABLE_OPENAI_FALLBACK: anthropic, then openai once anthropic is 95 % used).
    # A model with no known price: "highest" charges the highest price of its provider (and
    # flags the cost as estimated), "zero" books it at $0, "refuse" refuses requests for it.
    unpriced: Literal["refuse", "highest", "zero"] = "highest"
    provider_order: list[str] = Field(default_factory=list)
    switch_threshold: float = Field(default=0.95, gt=0, le=1)  # OPENAI_FALLBACK_THRESHOLD
    # Model names agents send that nothing configured serves ("claude-*", "gpt-5*"): a name
    # pattern → the route or model that answers them instead (the first pattern that matches).
    model_aliases: dict[str, str] = Field(default_factory=dict)

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
    """Where state lives. Embedded by default (memory counters, SQLite ledger);
    several replicas share Redis counters and a PostgreSQL ledger (docs/scale-out.md)."""

    counters: str = "memory"  # "memory" | "redis://host:6379/0"
    ledger: str = "sqlite"  # "sqlite" | "postgresql://user@host:5432/db"
    key_prefix: str = Field(default="qf:", min_length=1, max_length=64)  # Redis key prefix
    replica_id: str | None = Field(default=None, min_length=1, max_length=128)
    hold_ttl_s: float = Field(default=300.0, gt=0)  # a dead replica's holds are charged after
    stale_after_s: float = Field(default=900.0, gt=0)  # pending rows of a vanished replica
    on_counter_failure: Literal["fail_closed"] = "fail_closed"  # 503 while Redis is down

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
    provider: str | None = None  # a budget on one provider only (seed 003: per-provider months)


class AgentSpec(_Model):
    """An agent (seed 003's ``ai_name``): budgets, provider order, rate limits, token cap."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    key: str | None = Field(default=None, pattern=r"^qf-[A-Za-z0-9_-]{16,128}$")  # virtual key
    budgets: list[AgentBudgetSpec] = Field(default_factory=list)
    providers: list[str] = Field(default_factory=list)  # primary first, then fallbacks
    switch_threshold: float = Field(default=0.95, gt=0, le=1)  # seed 003: 95 %
    requests_per_minute: int | None = Field(default=None, ge=1)  # seed 003: 42
    requests_per_day: int | None = Field(default=None, ge=1)  # seed 003: 3,400
    max_tokens_per_request: int | None = Field(default=None, ge=1)  # seed 003: 17,000
    default_max_tokens: int | None = Field(default=1024, ge=1)  # seed 003: OPENAI_MAX_TOKENS
    admin: bool = False  # the agent's key may do what the admin token does


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

    url: str
    format: Literal["json", "slack"] = "json"
    secret: str | None = None  # X-Quotaflow-Signature: sha256=<HMAC-SHA256 of the body>
    events: list[str] = Field(default_factory=lambda: list(NOTIFY_EVENTS))
    timeout_s: float = Field(default=5.0, gt=0, le=60)

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
    agents: list[AgentSpec] = Field(default_factory=list)
    server: ServerSpec = Field(default_factory=ServerSpec)
    settings: SettingsSpec = Field(default_factory=SettingsSpec)
    providers: list[ProviderSpec] = Field(default_factory=list)
    routes: list[RouteSpec] = Field(default_factory=list)
    limits: list[LimitSpec] = Field(default_factory=list)  # global
    storage: StorageSpec = Field(default_factory=StorageSpec)  # scale-out
    notify: list[NotifySpec] = Field(default_factory=list)  # alert webhooks

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
