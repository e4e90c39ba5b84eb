// Charts drawn with uPlot (vendored: uPlot.iife.min.js, its CSS and licence beside this file;
// loaded by index.html before the modules, nothing from a CDN). Each chart sizes itself to its
// box (a ResizeObserver), labels its axes with as many decimals as the tick step needs (so
// labels are distinct), sizes the y axis to its longest label (never clipped) and draws axis
// text at 12 px on every screen. A chart without data shows the same empty line as the others.

import { h } from "./dom.js";
import { duration } from "./format.js";

const uPlot = globalThis.uPlot;
const HEIGHT = 200;
const AXIS_FONT = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
const AXIS_STROKE = "#a8a8b3";
const GRID = { stroke: "#34343c", width: 1 };

export const PALETTE = [
  "#9333ea", "#6366f1", "#22d3ee", "#f59e0b", "#10b981", "#ec4899", "#84cc16", "#f97316",
];

/** A stable colour per name (providers keep theirs across charts). */
export function colorOf(name, names) {
  const i = [...names].sort().indexOf(name);
  return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
}

export function legend(items) {
  return h(
    "ul",
    { class: "legend" },
    items.map(([name, color, dashed]) =>
      h("li", null, h("span", { class: `swatch${dashed ? " dashed" : ""}`, "data-color": color }), name),
    ),
  );
}

/** Paint legend swatches from their data-color (no inline style attributes: CSP). */
export function paintSwatches(root) {
  for (const el of root.querySelectorAll(".swatch[data-color]")) {
    el.style.backgroundColor = el.dataset.color;
  }
}

/** The one empty state every chart shows. */
export function emptyChart(what) {
  return h("p", { class: "empty chart-empty" }, `No ${what} yet: this chart fills as requests are answered.`);
}

// -- tick labels -----------------------------------------------------------------------------
/** Decimals a tick step needs: 0.005 → 3, 0.25 → 2, 5 → 0. */
function decimals(step) {
  if (!(step > 0) || step >= 1) return 0;
  return Math.min(Math.ceil(-Math.log10(step) - 1e-9), 8);
}

const NUM = (d) => new Intl.NumberFormat("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });

export const tickFormats = {
  tokens: (v, step) => (step >= 1e6 ? `${NUM(decimals(step / 1e6)).format(v / 1e6)}M` : NUM(decimals(step)).format(v)),
  usd: (v, step) => `$${NUM(Math.max(decimals(step), step < 1 ? 2 : 0)).format(v)}`,
  ms: (v, step) => (step >= 1000 ? `${NUM(decimals(step / 1000)).format(v / 1000)} s` : `${NUM(decimals(step)).format(v)} ms`),
};

/** The y axis: its labels from ``fmt`` and a width that fits the longest one. */
function yAxis(fmt) {
  return {
    stroke: AXIS_STROKE, font: AXIS_FONT, grid: GRID, ticks: { show: false }, gap: 6,
    values: (u, splits, axisIdx, space, incr) => splits.map((v) => fmt(v, incr)),
    size(u, values, axisIdx, cycleNum) {
      const axis = u.axes[axisIdx];
      if (cycleNum > 1) return axis._size;
      const longest = (values || []).reduce((a, v) => (v.length > a.length ? v : a), "");
      u.ctx.font = axis.font[0];
      return Math.ceil(axis.gap + 8 + u.ctx.measureText(longest).width / uPlot.pxRatio);
    },
  };
}

const HOUR_MINUTE = { hour: "2-digit", minute: "2-digit", hour12: false };
const MONTH_DAY = { month: "short", day: "numeric", timeZone: "UTC" };

/** A time axis labelled "14:05" (or "Dec 2" for days). */
function timeAxis(format, space = 70) {
  return {
    stroke: AXIS_STROKE, font: AXIS_FONT, grid: { show: false }, ticks: { show: false }, space,
    values: (u, splits) => splits.map((t) => new Date(t * 1000).toLocaleString("en-GB", format)),
  };
}

/** The x range from shortly before the first bucket with data to the last one, at least
 * ``minSpan`` seconds wide: an hour's axis for one minute of traffic would squash it. */
function fitted(xs, hasData, step, minSpan) {
  const first = xs.findIndex((_, i) => hasData(i));
  const end = xs[xs.length - 1] + step;
  const start = Math.min(first < 0 ? xs[0] : xs[first] - step, end - minSpan);
  return () => [Math.max(start, xs[0] - step), end];
}

/** A uPlot in a box that follows its container's width; ``box.uplot`` is the chart. */
function plot(label, opts, data) {
  const box = h("div", { class: "plot", role: "img", "aria-label": label });
  const u = new uPlot(
    { width: 320, height: HEIGHT, legend: { show: false }, cursor: { points: { show: false } }, ...opts },
    data,
    box,
  );
  box.uplot = u;
  new ResizeObserver((entries) => {
    const width = Math.floor(entries[0].contentRect.width);
    if (width > 0 && width !== u.width) u.setSize({ width, height: HEIGHT });
  }).observe(box);
  return box;
}

function barPaths(share = 0.8) {
  return uPlot.paths.bars({ size: [share, 48], gap: 1 });
}

// -- charts ----------------------------------------------------------------------------------
/** Stacked bars per time bucket: series = {name: [values…]} aligned with starts (epoch s). */
export function stackedBars({ starts, series, label }) {
  const names = Object.keys(series);
  const cumulative = [];
  let below = starts.map(() => 0);
  for (const name of names) {
    below = below.map((b, i) => b + (series[name][i] || 0));
    cumulative.push(below);
  }
  // Drawn tallest first: each provider's bar covers the ones above it in the stack.
  const order = names.map((_, i) => i).reverse();
  const x = fitted(starts, (i) => below[i] > 0, 60, 600);
  return plot(label, {
    scales: { x: { time: true, range: x }, y: { range: (u, lo, hi) => [0, Math.max(hi, 1)] } },
    axes: [timeAxis(HOUR_MINUTE), yAxis(tickFormats.tokens)],
    series: [{}, ...order.map((i) => ({
      label: names[i], stroke: colorOf(names[i], names), fill: colorOf(names[i], names),
      paths: barPaths(), points: { show: false },
    }))],
  }, [starts, ...order.map((i) => cumulative[i])]);
}

/** Bars per day: labels "YYYY-MM-DD", values in USD. */
export function bars({ labels, values, label, color = "#6366f1" }) {
  const days = labels.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
  const x = fitted(days, (i) => values[i] > 0, 86400, 7 * 86400);
  return plot(label, {
    scales: { x: { time: true, range: x }, y: { range: (u, lo, hi) => [0, hi > 0 ? hi : 0.01] } },
    axes: [timeAxis(MONTH_DAY, 60), yAxis(tickFormats.usd)],
    series: [{}, { label: "cost", stroke: color, fill: color, paths: barPaths(0.7), points: { show: false } }],
  }, [days, values]);
}

/** Lines over time buckets; null values leave gaps. series: [{name, values, color, dashed}]. */
export function lines({ starts, series, label }) {
  const timed = (i) => series.some((l) => l.values[i] !== null && l.values[i] !== undefined);
  return plot(label, {
    scales: { x: { time: true, range: fitted(starts, timed, 60, 600) }, y: { range: (u, lo, hi) => [0, Math.max(hi, 1)] } },
    axes: [timeAxis(HOUR_MINUTE), yAxis(tickFormats.ms)],
    series: [{}, ...series.map((l) => ({
      label: l.name, stroke: l.color, width: 2, dash: l.dashed ? [5, 4] : undefined,
      points: { show: true, size: 5, fill: l.color },
    }))],
  }, [starts, ...series.map((l) => l.values)]);
}

// -- time until empty ------------------------------------------------------------------------
const LOG_MIN = 10;
const LOG_MAX = 35 * 86400;

function logShare(seconds) {
  const v = Math.min(Math.max(seconds, LOG_MIN), LOG_MAX);
  return (100 * Math.log(v / LOG_MIN)) / Math.log(LOG_MAX / LOG_MIN);
}

/**
 * Time until each row runs out (bar, log scale from 10 s to 35 days) and until it resets
 * (tick), as text rows: rows [{name, emptyIn (s | null), resetIn (s | null), before}].
 */
export function runway({ rows, label }) {
  return h("div", { class: "runway-list", role: "list", "aria-label": label }, rows.map((row) => {
    const tone = row.emptyIn === null ? "ok" : row.before ? "critical" : "warning";
    const text = row.emptyIn === null
      ? "does not run out at the current rate"
      : `empty in ${duration(row.emptyIn)}${row.before ? ", before its reset" : ""}`;
    const bar = h("div", { class: `runway-fill ${tone}`, "data-pct": logShare(row.emptyIn ?? LOG_MAX).toFixed(1) });
    const tick = row.resetIn === null ? null
      : h("div", { class: "runway-reset", "data-left": logShare(row.resetIn).toFixed(1), title: `resets in ${duration(row.resetIn)}` });
    return h("div", { class: "runway-row", role: "listitem" },
      h("span", { class: "runway-name" }, row.name),
      h("div", { class: "runway-bar" }, bar, tick),
      h("span", { class: "runway-text" }, text,
        row.resetIn !== null ? h("span", { class: "muted" }, `; resets in ${duration(row.resetIn)}`) : null));
  }));
}

/** Size the runway bars and ticks from their data attributes (CSSOM: CSP). */
export function paintRunways(root) {
  for (const el of root.querySelectorAll(".runway-fill[data-pct]")) el.style.width = `${el.dataset.pct}%`;
  for (const el of root.querySelectorAll(".runway-reset[data-left]")) el.style.left = `${el.dataset.left}%`;
}
