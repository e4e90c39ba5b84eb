// The dashboard: follows the live snapshot stream, renders each section when its data
// changed, and sends the operator's actions with the admin token.

import { ApiError, call, authHeaders, setToken, token } from "./api.js";
import { paintRunways, paintSwatches } from "./charts.js";
import { h, replace } from "./dom.js";
import { relative } from "./format.js";
import { paintBars, renderProviders, tick } from "./keys.js";
import { follow } from "./stream.js";
import * as views from "./views.js";

const $ = (id) => document.getElementById(id);
const PRESETS = [
  "openai", "anthropic", "claude", "gemini", "groq", "openrouter", "kimi", "mistral",
  "deepseek", "cohere", "ai21", "huggingface",
];

const state = {
  snap: null,
  viewer: null,
  offset: 0, // server clock − client clock, in seconds
  instance: null,
  rendered: {},
  lastLogId: null,
  logFilter: "all",
  receivedAt: 0,
};

const serverNow = () => Date.now() / 1000 + state.offset;

// -- feedback -------------------------------------------------------------------------------
let toastTimer = null;
function toast(message, tone = "ok") {
  const el = $("toast");
  el.textContent = message;
  el.dataset.tone = tone;
  el.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => el.classList.remove("show"), tone === "error" ? 8000 : 4000);
}

function setConn(kind, detail) {
  const el = $("conn");
  el.dataset.state = kind;
  el.textContent = {
    connecting: "connecting…", live: "live", reconnecting: "reconnecting…", denied: "signed out",
  }[kind] || kind;
  const locked = $("locked");
  if (kind === "denied") {
    locked.hidden = false;
    locked.textContent = "Sign in with the admin token to see the dashboard. The first " +
      "'quotaflow serve' leaves it in <data folder>/admin_token; 'quotaflow admin-token " +
      `rotate' makes a new one. (${detail})`;
  } else if (kind === "live") {
    locked.hidden = true;
  }
}

function updateSession() {
  const viewer = state.viewer;
  const signedIn = Boolean(token());
  const trusted = viewer && viewer.mode === "trust_local";
  $("login").hidden = signedIn || trusted;
  $("session").hidden = !(signedIn || trusted);
  $("logout").hidden = !signedIn;
  $("mode").textContent = trusted ? "trust-local mode (no token needed)" : signedIn ? "signed in as admin" : "";
  const readOnly = viewer && !viewer.admin;
  document.body.classList.toggle("read-only", Boolean(readOnly));
  // Said once, at the top: the buttons that need the token are disabled below it.
  const note = $("read-only-note");
  note.hidden = !readOnly;
  note.textContent = readOnly
    ? "Read-only: sign in (top right) with the admin token that quotaflow serve printed at its first start to add keys, force a provider, reset quotas or disable keys."
    : "";
  $("add-key-open").disabled = Boolean(readOnly);
  $("add-key-open").title = readOnly ? "Sign in with the admin token to add a key" : "";
}

// -- rendering ------------------------------------------------------------------------------
function section(name, container, data, render) {
  const key = JSON.stringify(data);
  if (state.rendered[name] === key) return;
  state.rendered[name] = key;
  replace(container, ...(render() || []));
  paintBars(container);
  paintSwatches(container);
  paintRunways(container);
  tick(container, serverNow());
}

function render(snap) {
  const admin = Boolean(snap.viewer && snap.viewer.admin);
  section("status", $("status"), [snap.system, snap.status, snap.requests], () => views.renderStatus(snap.system, snap.status, snap.requests));
  section("unpriced", $("unpriced"), snap.unpriced || [], () => views.renderUnpriced(snap.unpriced));
  section("rec", $("recommendation"), [snap.recommendation, snap.status], () => views.renderRecommendation(snap.recommendation, snap.status));
  section("providers", $("providers"), [snap.providers, admin], () => renderProviders(snap.providers, admin, actions));
  const newestId = Math.max(0, ...snap.log.map((r) => r.id || 0));
  const since = state.lastLogId === null ? Infinity : state.lastLogId;
  const shown = snap.log.filter((r) => state.logFilter === "all" || views.logOutcome(r) === state.logFilter);
  section("log", $("log"), [shown, state.logFilter], () => views.renderLog(shown, since, state.logFilter));
  state.lastLogId = newestId;
  section("charts", $("charts"), [snap.charts, snap.forecast], () => views.renderCharts(snap.charts, snap.forecast, serverNow()));
  section("agents", $("agents"), snap.agents, () => views.renderAgents(snap.agents));
  section("alerts", $("alerts"), snap.alerts.recent, () => views.renderAlerts(snap.alerts));
  const banner = $("banner");
  const content = views.renderBanner(snap.alerts, snap.status);
  banner.hidden = !content;
  if (content) {
    banner.dataset.severity = views.bannerSeverity(snap.status);
    section("banner", banner, [snap.alerts.active, snap.status], () => content);
  } else {
    state.rendered.banner = null;
  }
  const names = new Set([...PRESETS, ...snap.providers.map((p) => p.provider)]);
  section("presets", $("ak-providers"), [...names], () => [...names].sort().map((n) => h("option", { value: n })));
}

function apply(snap) {
  if (snap.instance !== state.instance) {
    state.instance = snap.instance; // a new server process: take everything afresh
    state.rendered = {};
    state.lastLogId = null;
  }
  state.snap = snap;
  state.viewer = snap.viewer;
  state.offset = snap.generated_at - Date.now() / 1000;
  state.receivedAt = Date.now();
  document.body.dataset.version = String(snap.version);
  document.body.dataset.instance = snap.instance;
  updateSession();
  render(snap);
}

async function refresh() {
  try {
    apply(await call("GET", "/api/dashboard"));
  } catch {
    /* the stream brings the next snapshot */
  }
}

// -- actions --------------------------------------------------------------------------------
function failed(err) {
  if (err instanceof ApiError && err.status === 401) {
    setToken("");
    updateSession();
    stream.restart();
    toast(`The admin token was refused: sign in again. (${err.message})`, "error");
  } else if (err instanceof ApiError && err.status === 403) {
    toast(`Not allowed: ${err.message}`, "error");
  } else {
    toast(err.message || String(err), "error");
  }
}

async function act(method, path, body) {
  try {
    const answer = await call(method, path, body);
    toast(answer.message || "done", "ok");
    await refresh();
  } catch (err) {
    failed(err);
  }
}

const actions = {
  force: (p) => act("POST", "/api/force_provider", { provider: p }),
  clearForced: () => act("POST", "/api/clear_forced", {}),
  reset(p) {
    if (window.confirm(`Reset the quota of ${p}? Its usage so far stops counting.`)) {
      act("POST", "/api/reset_quota", { provider: p });
    }
  },
  toggle: (keyId, on) =>
    act("POST", `/api/keys/${encodeURIComponent(keyId)}/${on ? "enable" : "disable"}`, {}),
};

// -- forms ----------------------------------------------------------------------------------
function openAddKey(open) {
  const form = $("add-key");
  form.hidden = !open;
  $("add-key-open").setAttribute("aria-expanded", String(open));
  $("add-key-error").textContent = "";
  if (open) $("ak-provider").focus();
  else {
    form.reset(); // the secret never stays in the page
    $("add-key-open").focus();
  }
}

async function submitAddKey(ev) {
  ev.preventDefault();
  const form = $("add-key");
  const body = {
    provider: $("ak-provider").value.trim(),
    api_key: $("ak-secret").value.trim(),
  };
  // Empty: a key without a quota of its own.
  if ($("ak-quota").value.trim() !== "") body.quota_total = Number($("ak-quota").value);
  $("add-key-error").textContent = "";
  try {
    const answer = await call("POST", "/api/add_key", body);
    form.reset();
    openAddKey(false);
    toast(`${answer.message} (${answer.key_id}, ${answer.api_key})`, "ok");
    await refresh();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) failed(err);
    $("add-key-error").textContent = err.message;
  }
}

async function signIn(ev) {
  ev.preventDefault();
  const value = $("token").value.trim();
  if (!value) return;
  try {
    const snap = await call("GET", "/api/dashboard", undefined, { Authorization: `Bearer ${value}` });
    if (!snap.viewer.admin) throw new ApiError(403, "that is not the admin token (qfadm-…)");
    setToken(value);
    $("token").value = "";
    apply(snap);
    stream.restart();
    toast("Signed in: actions are enabled", "ok");
  } catch (err) {
    const msg = err.status === 401 ? "Wrong admin token: the gateway refused it." : err.message;
    toast(msg, "error");
    $("token").select();
  }
}

function signOut() {
  setToken("");
  updateSession();
  stream.restart();
  refresh();
  toast("Signed out", "ok");
}

// -- start ----------------------------------------------------------------------------------
const stream = follow({
  url: "/api/events",
  headers: authHeaders,
  onSnapshot: apply,
  onState: setConn,
});

$("log-filter").addEventListener("change", (ev) => {
  state.logFilter = ev.target.value;
  if (state.snap) render(state.snap);
});
$("login").addEventListener("submit", signIn);
$("logout").addEventListener("click", signOut);
$("add-key-open").addEventListener("click", () => openAddKey($("add-key").hidden));
$("add-key-cancel").addEventListener("click", () => openAddKey(false));
$("add-key").addEventListener("submit", submitAddKey);
$("add-key").addEventListener("keydown", (ev) => {
  if (ev.key === "Escape") openAddKey(false);
});

setInterval(() => {
  tick(document.body, serverNow());
  if (state.snap) {
    $("updated").textContent = `updated ${relative(state.receivedAt / 1000, Date.now() / 1000)}`;
  }
}, 1000);
