// The dashboard's sections other than the key cards: system status, recommendation,
// usage log, charts and forecast, agents, alerts.

import { bars, colorOf, emptyChart, legend, lines, runway, stackedBars } from "./charts.js";
import { h } from "./dom.js";
import { amount, clock, compact, dateTime, ms, num, pct, plural, usd, windowName } from "./format.js";
import { badge, when } from "./keys.js";

const EMERGENCY_TONE = { normal: "ok", warning: "warning", critical: "critical", emergency: "critical" };

function tile(name, value, detail, tone) {
  return h("div", { class: `tile${tone ? ` tone-${tone}` : ""}`, "data-tile": name },
    h("div", { class: "tile-name" }, name),
    h("div", { class: "tile-value" }, value),
    detail ? h("div", { class: "tile-detail" }, detail) : null);
}

/** The tiles; Health, Keys available and Emergency level read the one status (st);
 * requests: the last hour's requests by how they ended, counted as reports count them. */
export function renderStatus(sys, st, requests) {
  const rq = requests || { requests: 0, answered: 0, refused: 0, failed: 0 };
  return [
    tile("Health", st.title, st.message, st.level),
    tile("Keys available", `${st.keys_available} / ${st.keys_total}`,
      st.keys_available < st.keys_total ? `${plural(st.keys_total - st.keys_available, "key")} cannot take requests` : null,
      st.level === "ok" ? null : st.keys_available === 0 ? "critical" : "warning"),
    tile("Providers", `${sys.available_providers} / ${sys.total_providers}`, "available / configured"),
    tile("Overall usage", pct(sys.overall_used_pct), "of all token quotas"),
    tile("Forced provider", sys.forced_provider || "none", sys.forced_provider ? "used while available" : "ranking decides",
      sys.forced_provider ? "accent" : null),
    tile("Emergency level", st.emergency, st.emergency_message, EMERGENCY_TONE[st.emergency]),
    tile("In flight", num(sys.in_flight), `strategy: ${sys.strategy}`),
    tile("Refused (last hour)", num(rq.refused),
      `no key could take them; of ${plural(rq.requests, "request")}, ${num(rq.answered)} answered, ${num(rq.failed)} failed`,
      rq.refused ? "warning" : null),
  ];
}

/** One line per model booked at a stand-in price (it has no known price). */
export function renderUnpriced(lines) {
  if (!lines || !lines.length) return [];
  return [h("ul", { class: "notices", "aria-label": "Models with no known price" },
    lines.map((line) => h("li", null, "⚠ ", line)))];
}

/** A cost, marked "~" when part of it is an estimate (no known price, or guessed tokens). */
function costCell(value, estimated) {
  return estimated
    ? h("span", { class: "estimated", title: "estimated: no known price, or tokens guessed" }, `~${usd(value)}`)
    : usd(value);
}

function breakdownTable(b) {
  const entries = Object.entries(b || {});
  if (!entries.length) return null;
  return h("table", { class: "breakdown" },
    h("caption", { class: "sr-only" }, "Score breakdown"),
    h("tbody", null, entries.map(([k, v]) =>
      h("tr", null, h("th", { scope: "row" }, k.replaceAll("_", " ").replace(/ pct$/, " %")),
        h("td", null, Number(v).toFixed(1))))));
}

export function renderRecommendation(rec, st) {
  if (!rec.route) return [h("p", { class: "empty" }, "No route configured yet.")];
  const intro = h("p", { class: "muted" },
    `For a request of ${rec.request.prompt_tokens} prompt + ${rec.request.max_tokens} completion tokens on route `,
    h("code", null, rec.route), ` (strategy ${rec.strategy})`,
    rec.forced_provider ? `, provider ${rec.forced_provider} forced` : "", ":");
  if (!rec.chosen) {
    return [intro, h("p", { class: "reason error", id: "rec-none" }, st.message),
      rejectedList(rec.rejected)];
  }
  const c = rec.chosen;
  const label = c.label && c.label !== c.key_id ? c.label : c.key_id;
  return [
    intro,
    h("div", { class: "chosen", id: "rec-chosen", "data-provider": c.provider, "data-key-id": c.key_id },
      h("div", { class: "chosen-main" },
        h("span", { class: "arrow", "aria-hidden": "true" }, "→ "),
        h("strong", { class: "rec-provider" }, c.provider), " / ",
        h("span", { class: "rec-key" }, label), " ",
        h("code", null, c.model), " ", badge(c.state)),
      h("div", { class: "chosen-why" },
        h("span", null, "score ", h("b", null, c.score.toFixed(1))),
        c.flags.length ? h("span", { class: "muted" }, ` · ${c.flags.join(", ")}`) : null,
        h("span", { class: "muted" }, ` · worst case ${usd(c.est_cost_usd)}`)),
      breakdownTable(c.breakdown)),
    rec.candidates.length > 1
      ? h("ol", { class: "ranking", start: 2, "aria-label": "Next candidates" },
        rec.candidates.slice(1).map((x) => h("li", null,
          h("b", null, x.provider), " / ", x.label && x.label !== x.key_id ? x.label : x.key_id,
          " ", h("code", null, x.model),
          h("span", { class: "muted" }, ` score ${x.score.toFixed(1)}`))))
      : null,
    rejectedList(rec.rejected),
  ];
}

function rejectedList(rejected) {
  if (!rejected || !rejected.length) return null;
  return h("details", { class: "rejected" },
    h("summary", null, `${plural(rejected.length, "key")} not eligible`),
    h("ul", null, rejected.map((r) =>
      h("li", null, h("b", null, r.provider), " / ", r.key_id, ": ", r.reason))));
}

// A log row's outcome, as the filter names it: a refusal is a request no key could take.
export function logOutcome(r) {
  if (r.status === "refused") return "refused";
  if (r.success) return "ok";
  return r.status === "pending" ? "pending" : "failed";
}

export function renderLog(rows, newSince, filter = "all") {
  if (!rows.length) return [h("p", { class: "empty" }, filter === "all" ? "No requests yet." : "None of these among the latest requests.")];
  const head = ["Time", "Agent", "Provider / key", "Model", "Result", "Tokens", "Cost", "Latency"];
  return [h("div", { class: "table-wrap" }, h("table", { class: "log", id: "log-table" },
    h("caption", { class: "sr-only" }, "Most recent attempts and refusals, newest first"),
    h("thead", null, h("tr", null, head.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", null, rows.map((r) => h("tr", {
      class: `${r.success ? "ok" : r.status === "pending" ? "pending" : "fail"}${r.id > newSince ? " new" : ""}`,
      "data-row-id": r.id,
    },
    h("td", null, clock(r.ts)),
    h("td", null, r.agent),
    h("td", null, r.provider || "–", r.key_id ? h("span", { class: "muted" }, ` / ${r.key_id}`) : null),
    h("td", null, r.model || r.route),
    h("td", { class: "result" }, r.success ? "✓ " : r.status === "pending" ? "… " : "✗ ",
      r.status === "ok" ? "ok" : r.status,
      r.error_kind ? h("span", { class: "muted" }, ` ${r.error_kind}`) : null,
      r.detail && !r.success ? h("div", { class: "detail" }, r.detail) : null),
    h("td", { class: "num" }, num(r.total_tokens),
      r.total_tokens ? h("span", { class: "muted" }, ` (${num(r.prompt_tokens)}+${num(r.completion_tokens)})`) : null),
    h("td", { class: "num" }, costCell(r.cost_usd, r.cost_estimated)),
    h("td", { class: "num" }, ms(r.latency_ms)))))))];
}

function figure(title, chart, caption) {
  return h("figure", { class: "chart-box" },
    h("figcaption", null, h("h3", null, title), caption || null), chart);
}

export function renderCharts(charts, forecast, serverNow) {
  const t = charts.timeline;
  const names = Object.keys(t.tokens);
  const tokens = names.length
    ? stackedBars({ starts: t.starts, series: t.tokens, label: "Tokens per provider per minute, last hour" })
    : emptyChart("tokens in the last hour");
  const days = charts.cost_per_day;
  const cost = days.some((d) => d.cost_usd > 0)
    ? bars({ labels: days.map((d) => d.day), values: days.map((d) => d.cost_usd), label: "Cost per day, last 14 days" })
    : emptyChart("cost in the last 14 days");
  const timed = [...t.latency_p50_ms, ...t.latency_p95_ms].some((v) => v !== null && v !== undefined);
  const latency = timed
    ? lines({
      starts: t.starts, label: "Latency p50 and p95 per minute, last hour",
      series: [
        { name: "p50", values: t.latency_p50_ms, color: "#6366f1" },
        { name: "p95", values: t.latency_p95_ms, color: "#9333ea", dashed: true },
      ],
    })
    : emptyChart("latency in the last hour");
  return [
    figure("Tokens per provider", tokens,
      legend(names.map((n) => [n, colorOf(n, names)]))),
    figure("Cost per day", cost, h("p", { class: "muted" },
      "today ", days.length ? costCell(days[days.length - 1].cost_usd, days[days.length - 1].cost_estimated) : usd(0),
      days.some((d) => d.cost_estimated)
        ? h("span", { class: "estimated", id: "cost-estimated" }, " · ~ includes estimated costs (a model with no known price)")
        : null)),
    figure("Latency", latency, legend([["p50", "#6366f1"], ["p95", "#9333ea", true]])),
    renderForecast(forecast, serverNow),
  ];
}

function renderForecast(f, serverNow) {
  const rows = f.keys.map((k) => ({
    name: k.key_id,
    emptyIn: k.exhausts_at === null ? null : Math.max(k.exhausts_at - serverNow, 0),
    resetIn: k.resets_at === null ? null : Math.max(k.resets_at - serverNow, 0),
    before: k.runs_out_before_reset,
  }));
  const pools = f.pools.map((p) => h("li", { class: "pool", "data-route": p.route },
    h("b", null, `Pool “${p.route}”`), ` (${plural(p.keys.length, "key")}, ${compact(p.remaining)} ${p.metric} left, `,
    `${compact(p.rate_per_hour)}/h): `,
    p.exhausts_at === null
      ? h("span", { class: "good" }, p.unbounded_keys.length ? "has keys without a quota: never empty"
        : "does not run out within 35 days")
      : h("span", { class: "bad" }, when(p.exhausts_at, "runs out ", "ran out "),
        p.blackouts.length && p.blackouts[0].end ? ["; refills ", when(p.blackouts[0].end, "")] : "")));
  return figure("Forecast: time until empty",
    rows.length ? runway({ rows, label: "Time until each key's quota runs out at the current burn rate" })
      : h("p", { class: "empty chart-empty" }, "No key has a quota to forecast yet."),
    h("div", null, h("ul", { class: "pools" }, pools),
      h("p", { class: "muted" }, "Bar: time until empty at the recent burn rate; tick: next reset; red: empties before it resets.")));
}

export function renderAgents(agents) {
  if (!agents.length) return [h("p", { class: "empty" }, "No agents yet.")];
  return [h("div", { class: "table-wrap" }, h("table", { class: "agents", id: "agents-table" },
    h("caption", { class: "sr-only" }, "Agents, their budgets and this month's usage"),
    h("thead", null, h("tr", null, ["Agent", "Source", "This month", "Budgets"].map((x) =>
      h("th", { scope: "col" }, x)))),
    h("tbody", null, agents.map((a) => h("tr", { "data-agent": a.name },
      h("td", null, h("b", { class: "agent-name" }, a.name),
        a.provider_order.length ? h("div", { class: "muted" }, `order: ${a.provider_order.join(" → ")}`) : null),
      h("td", null, a.source, a.has_key ? h("span", { class: "muted" }, " · key") : null),
      h("td", { class: "num" }, `${num(a.usage.tokens_used)} tokens`, h("div", { class: "muted" },
        `${num(a.usage.requests)} req · ${usd(a.usage.cost_usd)}`)),
      h("td", null, a.budgets.length ? a.budgets.map((b) => h("div", { class: "budget" },
        h("span", null, `${b.metric} ${windowName(b.window)}`, b.id.includes("@") ? ` @${b.id.split("@")[1].split("/")[0]}` : ""),
        h("div", { class: "bar thin", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
          "aria-valuenow": Math.min(b.used_pct, 100).toFixed(1), "aria-label": `${a.name} ${b.metric} budget` },
        h("div", { class: `fill state-${b.state}`, "data-pct": Math.min(b.used_pct, 100).toFixed(2) })),
        h("span", { class: "muted" }, `${amount(b.metric, b.used)} / ${amount(b.metric, b.amount)}`)))
        : h("span", { class: "muted" }, "no budget")))))))];
}

export function renderAlerts(alerts) {
  if (!alerts.recent.length) return [h("p", { class: "empty" }, "No alerts.")];
  return [h("ul", { class: "alerts" }, alerts.recent.map((a) => h("li", { class: `alert sev-${a.severity}` },
    h("span", { class: "alert-level" }, a.level), " ",
    h("span", { class: "alert-msg" }, a.message), " ",
    h("time", { class: "muted", datetime: a.timestamp }, dateTime(a.ts)))))];
}

/** Shown while the status is not ok or an alert is active (an agent at its budget, say):
 * the status's message, then the most severe active alert. */
export function renderBanner(alerts, st) {
  const active = alerts.active;
  if (st.level === "ok" && !active.length) return null;
  const order = { critical: 0, error: 1, warning: 2 };
  const sorted = [...active].sort((a, b) => order[a.severity] - order[b.severity]);
  return [
    h("strong", null, `${st.title[0].toUpperCase()}${st.title.slice(1)}: `),
    h("span", null, st.message),
    sorted.length ? h("span", null, ` ${plural(active.length, "active alert")}, the first: ${sorted[0].message}`) : null,
    active.length > 1 ? h("a", { href: "#alerts-section" }, " (all alerts)") : null,
  ];
}

export function bannerSeverity(st) {
  return st.level === "critical" ? "critical" : "warning";
}
