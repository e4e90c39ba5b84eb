// Hand-written SVG charts: stacked bars, bars, lines, and a time-to-empty chart on a
// logarithmic time axis. Each returns an <svg role="img"> whose aria-label sums it up;
// every mark has a <title> (a tooltip on hover).

import { h, s } from "./dom.js";
import { compact, duration } from "./format.js";

const W = 640;
const H = 220;
const M = { l: 52, r: 14, t: 12, b: 26 };
const PW = W - M.l - M.r;
const PH = H - M.t - M.b;

export const PALETTE = [
  "#9333ea", "#6366f1", "#22d3ee", "#f59e0b", "#10b981", "#ec4899", "#84cc16", "#f97316",
];

/** A stable colour per name (providers keep theirs across charts). */
export function colorOf(name, names) {
  const i = [...names].sort().indexOf(name);
  return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function frame(label, max, fmt) {
  const svg = s("svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "chart",
    preserveAspectRatio: "xMidYMid meet",
  });
  for (let i = 0; i <= 4; i += 1) {
    const y = M.t + PH - (PH * i) / 4;
    svg.append(
      s("line", { x1: M.l, x2: W - M.r, y1: y, y2: y, class: "grid" }),
      s("text", { x: M.l - 6, y: y + 4, class: "axis", "text-anchor": "end" }, fmt((max * i) / 4)),
    );
  }
  return svg;
}

function timeLabels(svg, starts, step) {
  const n = starts.length;
  const every = Math.max(Math.ceil(n / 6), 1);
  starts.forEach((t, i) => {
    if ((n - 1 - i) % every !== 0) return;
    const x = M.l + (i + 0.5) * step;
    const label = new Date(t * 1000).toLocaleTimeString([], {
      hour: "2-digit", minute: "2-digit", hour12: false,
    });
    svg.append(s("text", { x, y: H - 8, class: "axis", "text-anchor": "middle" }, label));
  });
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

/** Stacked bars per time bucket: series = {name: [values…]} aligned with starts. */
export function stackedBars({ starts, series, label, unit = "tokens" }) {
  const names = Object.keys(series);
  const totals = starts.map((_, i) => names.reduce((a, n) => a + (series[n][i] || 0), 0));
  const max = niceMax(Math.max(...totals, 0));
  const svg = frame(label, max, compact);
  const step = PW / Math.max(starts.length, 1);
  starts.forEach((t, i) => {
    let y = M.t + PH;
    for (const name of names) {
      const v = series[name][i] || 0;
      if (v <= 0) continue;
      const hgt = (v / max) * PH;
      y -= hgt;
      const time = new Date(t * 1000).toLocaleTimeString([], { hour12: false });
      svg.append(
        s("rect", {
          x: M.l + i * step + step * 0.1, y, width: Math.max(step * 0.8, 1), height: hgt,
          fill: colorOf(name, names), class: "mark",
        }, s("title", null, `${name} · ${time}: ${compact(v)} ${unit}`)),
      );
    }
  });
  timeLabels(svg, starts, step);
  return svg;
}

/** Plain bars with text labels under them (e.g. cost per day). */
export function bars({ labels, values, label, fmt, color = "#6366f1" }) {
  const max = niceMax(Math.max(...values, 0));
  const svg = frame(label, max, fmt);
  const step = PW / Math.max(values.length, 1);
  const every = Math.max(Math.ceil(values.length / 7), 1);
  values.forEach((v, i) => {
    const hgt = (v / max) * PH;
    svg.append(
      s("rect", {
        x: M.l + i * step + step * 0.15, y: M.t + PH - hgt, width: step * 0.7,
        height: Math.max(hgt, v > 0 ? 1 : 0), fill: color, class: "mark",
      }, s("title", null, `${labels[i]}: ${fmt(v)}`)),
    );
    if ((values.length - 1 - i) % every === 0) {
      svg.append(
        s("text", { x: M.l + (i + 0.5) * step, y: H - 8, class: "axis", "text-anchor": "middle" },
          labels[i].slice(5)),
      );
    }
  });
  return svg;
}

/** Lines over time buckets; null values leave gaps. */
export function lines({ starts, series, label, fmt }) {
  const all = series.flatMap((l) => l.values.filter((v) => v !== null && v !== undefined));
  const max = niceMax(Math.max(...all, 0));
  const svg = frame(label, max, fmt);
  const step = PW / Math.max(starts.length, 1);
  for (const line of series) {
    let d = "";
    let pen = false;
    line.values.forEach((v, i) => {
      if (v === null || v === undefined) {
        pen = false;
        return;
      }
      const x = M.l + (i + 0.5) * step;
      const y = M.t + PH - (v / max) * PH;
      d += `${pen ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)} `;
      pen = true;
      svg.append(s("circle", { cx: x, cy: y, r: 2.5, fill: line.color, class: "mark" },
        s("title", null, `${line.name}: ${fmt(v)}`)));
    });
    if (d) {
      svg.append(s("path", {
        d, fill: "none", stroke: line.color, "stroke-width": 2,
        "stroke-dasharray": line.dashed ? "5 4" : null,
      }));
    }
  }
  timeLabels(svg, starts, step);
  return svg;
}

const LOG_TICKS = [
  [60, "1m"], [3600, "1h"], [86400, "1d"], [7 * 86400, "1w"], [30 * 86400, "30d"],
];
const LOG_MIN = 10;
const LOG_MAX = 35 * 86400;

function logX(seconds, x0, width) {
  const v = Math.min(Math.max(seconds, LOG_MIN), LOG_MAX);
  return x0 + (width * Math.log(v / LOG_MIN)) / Math.log(LOG_MAX / LOG_MIN);
}

/**
 * Time until each row runs out (bar) and until it resets (tick), on a log axis from 10 s
 * to 35 days. rows: [{name, emptyIn (s | null), resetIn (s | null), before (bool)}].
 */
export function runway({ rows, label }) {
  const rowH = 26;
  const left = 150;
  const right = 12;
  const top = 8;
  const height = top + rows.length * rowH + 26;
  const width = W - left - right;
  const svg = s("svg", {
    viewBox: `0 0 ${W} ${height}`, role: "img", "aria-label": label, class: "chart",
  });
  for (const [sec, text] of LOG_TICKS) {
    const x = logX(sec, left, width);
    svg.append(
      s("line", { x1: x, x2: x, y1: top, y2: height - 22, class: "grid" }),
      s("text", { x, y: height - 8, class: "axis", "text-anchor": "middle" }, text),
    );
  }
  rows.forEach((row, i) => {
    const y = top + i * rowH;
    const name = row.name.length > 22 ? `${row.name.slice(0, 21)}…` : row.name;
    svg.append(s("text", { x: left - 8, y: y + 16, class: "axis label", "text-anchor": "end" }, name,
      s("title", null, row.name)));
    const tone = row.emptyIn === null ? "ok" : row.before ? "critical" : "warning";
    const end = row.emptyIn === null ? LOG_MAX : row.emptyIn;
    const text = row.emptyIn === null
      ? "not at the current rate"
      : `empty in ${duration(row.emptyIn)}${row.before ? " — before its reset" : ""}`;
    svg.append(s("rect", {
      x: left, y: y + 5, width: Math.max(logX(end, left, width) - left, 2), height: rowH - 10,
      class: `runway ${tone}`,
    }, s("title", null, `${row.name}: ${text}${row.resetIn !== null ? `; resets in ${duration(row.resetIn)}` : ""}`)));
    if (row.resetIn !== null) {
      const x = logX(row.resetIn, left, width);
      svg.append(s("line", { x1: x, x2: x, y1: y + 2, y2: y + rowH - 2, class: "reset-tick" },
        s("title", null, `resets in ${duration(row.resetIn)}`)));
    }
  });
  return svg;
}
