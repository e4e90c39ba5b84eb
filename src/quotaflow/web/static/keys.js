// The key cards, grouped by provider: state, one bar per limit, health, actions.

import { h } from "./dom.js";
import { amount, ms, num, pct, relative, windowName } from "./format.js";

export const STATE_LABEL = {
  ok: "OK", warning: "WARNING", critical: "CRITICAL", depleted: "DEPLETED",
  disabled: "DISABLED", invalid: "INVALID", cooling: "COOLING DOWN",
};

export function badge(state) {
  const st = STATE_LABEL[state] ? state : "depleted";
  return h("span", { class: `badge state-${st}`, "data-state": st }, STATE_LABEL[st]);
}

/** A time that ticks client-side: filled in by tick() from data-at; ``past`` replaces
 * ``prefix`` once the time has passed ("runs out in 5 s" → "ran out 2 s ago"). */
export function when(at, prefix = "", past = prefix) {
  return h("span", { class: "when", "data-at": at ?? "", "data-prefix": prefix, "data-past": past });
}

function limitRow(keyId, lim) {
  const share = Math.min(Math.max(lim.used_pct, 0), 100);
  const fill = h("div", { class: `fill state-${lim.state}`, "data-pct": share.toFixed(2) });
  const name = `${lim.metric} ${windowName(lim.window)}${lim.shared ? " (provider)" : ""}`;
  return h(
    "div",
    { class: "limit", "data-limit-id": lim.id },
    h("div", { class: "limit-head" },
      h("span", { class: "limit-name" }, name),
      h("span", { class: "limit-pct" }, pct(lim.used_pct))),
    h("div", {
      class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
      "aria-valuenow": share.toFixed(1), "aria-label": `${keyId} ${name}: ${pct(lim.used_pct)} used`,
    }, fill),
    h("div", { class: "limit-nums" },
      h("span", null, "used ", h("b", { class: "used" }, amount(lim.metric, lim.used)),
        lim.reserved ? ` (+${amount(lim.metric, lim.reserved)} reserved)` : "",
        " / ", h("b", { class: "total" }, amount(lim.metric, lim.amount))),
      h("span", null, h("b", { class: "remaining" }, amount(lim.metric, lim.remaining)), " left"),
      lim.resets_at ? when(lim.resets_at, "resets ") : h("span", { class: "muted" },
        lim.window === "once" ? "never resets" : "rolling")),
  );
}

function healthLine(k) {
  const hl = k.health || {};
  const n = (hl.successes || 0) + (hl.failures || 0);
  return h("dl", { class: "health" },
    h("div", null, h("dt", null, "latency"), h("dd", null, ms(hl.latency_ewma_ms))),
    h("div", null, h("dt", null, "success"),
      h("dd", null, n ? `${pct(hl.success_rate * 100)} of ${num(n)}` : "no calls yet")),
    h("div", null, h("dt", null, "circuit"), h("dd", null, hl.circuit || "closed")));
}

function reasonLine(k) {
  const hl = k.health || {};
  if (hl.disabled_reason?.startsWith("invalid: ")) {
    return h("p", { class: "reason error" }, `Rejected by the provider: ${hl.disabled_reason.slice(9)}`);
  }
  if (hl.disabled_reason) return h("p", { class: "reason error" }, `Disabled: ${hl.disabled_reason}`);
  if (hl.cooldown_until) {
    return h("p", { class: "reason warn" }, `Cooling down (${hl.cooldown_reason || "errors"}) `,
      when(hl.cooldown_until, "until "));
  }
  if (k.reason) return h("p", { class: "reason warn" }, k.reason);
  return null;
}

function actionButton(text, focus, admin, onclick, extra = {}) {
  return h("button", {
    type: "button", class: "btn small", "data-focus": focus, disabled: !admin,
    title: admin ? null : "Sign in with the admin token to do this", onclick, ...extra,
  }, text);
}

function keyCard(k, admin, act) {
  const title = k.label && k.label !== k.key_id ? k.label : k.key_id;
  const st = k.status || k.state; // one state per key: disabled and cooling win over usage
  return h(
    "article",
    { class: `card key state-${st}`, "data-key-id": k.key_id, "data-state": st,
      "aria-label": `Key ${title}` },
    h("header", { class: "card-head" },
      h("h4", { class: "key-label" }, title), badge(st)),
    h("p", { class: "key-meta" },
      h("code", null, k.key_id), " · ", h("code", null, k.api_key),
      k.managed ? " · added here" : "", k.enabled ? "" : " · disabled"),
    k.limits.some((lim) => !lim.shared) ? null
      : h("p", { class: "muted no-quota" }, "No quota of its own."),
    k.limits.map((lim) => limitRow(k.key_id, lim)),
    healthLine(k),
    reasonLine(k),
    h("div", { class: "actions" },
      k.enabled
        ? actionButton("Disable", `disable:${k.key_id}`, admin, () => act.toggle(k.key_id, false))
        : actionButton("Enable", `enable:${k.key_id}`, admin, () => act.toggle(k.key_id, true))),
  );
}

/** The provider's quotas, one per metric and window (never a per-minute limit summed with a
 * one-time quota): "tokens per day 45% of 3,000 · requests per minute 2 of 20". */
function providerWindows(p) {
  const seen = new Set();
  const groups = new Map();
  for (const k of p.keys) {
    for (const lim of k.limits) {
      if (seen.has(lim.id)) continue; // a provider-wide limit shows on every key
      seen.add(lim.id);
      const name = `${lim.metric} ${windowName(lim.window)}`;
      const g = groups.get(name) || { used: 0, amount: 0, metric: lim.metric };
      g.used += lim.used + (lim.reserved || 0);
      g.amount += lim.amount;
      groups.set(name, g);
    }
  }
  return h("ul", { class: "windows muted", "aria-label": `Quotas of ${p.provider}` },
    [...groups].map(([name, g]) => h("li", { "data-window": name },
      `${name}: ${pct(g.amount ? (g.used / g.amount) * 100 : 0)} of ${amount(g.metric, g.amount)}`)));
}

function providerGroup(p, admin, act) {
  return h(
    "section",
    { class: `provider${p.forced ? " forced" : ""}`, "data-provider": p.provider,
      "aria-label": `Provider ${p.provider}` },
    h("header", { class: "provider-head" },
      h("h3", { class: "provider-name" }, p.provider),
      badge(p.state),
      p.forced ? h("span", { class: "tag forced-tag" }, "FORCED") : null,
      providerWindows(p),
      h("div", { class: "actions" },
        p.forced
          ? actionButton("Clear forced", `clear:${p.provider}`, admin, () => act.clearForced())
          : actionButton("Force", `force:${p.provider}`, admin, () => act.force(p.provider)),
        actionButton("Reset quota", `reset:${p.provider}`, admin, () => act.reset(p.provider)))),
    h("div", { class: "cards" }, p.keys.map((k) => keyCard(k, admin, act))),
  );
}

export function renderProviders(providers, admin, act) {
  if (!providers.length) {
    return [h("p", { class: "empty" }, "No keys yet: add one with “+ Add key”.")];
  }
  return providers.map((p) => {
    const group = providerGroup(p, admin, act);
    // Groups share rows in proportion to their keys, so the cards fill each row (CSSOM:
    // the page's CSP allows no style attributes).
    group.style.flexGrow = String(p.keys.length);
    group.style.flexBasis = `min(100%, ${p.keys.length * 300}px)`;
    return group;
  });
}

/** Size the bars from data-pct (CSSOM, allowed by the page's CSP). */
export function paintBars(root) {
  for (const el of root.querySelectorAll(".fill[data-pct]")) el.style.width = `${el.dataset.pct}%`;
}

/** Refresh every relative time under root against the server's clock. */
export function tick(root, serverNow) {
  for (const el of root.querySelectorAll(".when")) {
    const at = el.dataset.at === "" ? null : Number(el.dataset.at);
    const prefix = at !== null && at < serverNow ? el.dataset.past ?? el.dataset.prefix : el.dataset.prefix;
    el.textContent = at === null ? "" : `${prefix}${relative(at, serverNow)}`;
  }
}
