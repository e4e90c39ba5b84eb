// Numbers, money, durations and times as the dashboard shows them.

const INT = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const DEC = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
const COMPACT = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

export function num(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  return Math.abs(x) >= 1e6 ? COMPACT.format(x) : INT.format(x);
}

export function compact(x) {
  return x === null || x === undefined ? "–" : COMPACT.format(x);
}

export function pct(x) {
  return x === null || x === undefined ? "–" : `${DEC.format(x)}%`;
}

/** "$25.00"; under a dollar 3 significant digits, at least two decimals: "$0.50",
 * "$0.0125", "$0.0001" (a limit of a hundredth of a cent is not "$0.00"). */
export function usd(x) {
  if (x === null || x === undefined) return "–";
  if (x === 0) return "$0";
  if (Math.abs(x) >= 1 || !Number.isFinite(x)) return `$${x.toFixed(2)}`;
  const decimals = Math.min(Math.max(2 - Math.floor(Math.log10(Math.abs(x))), 2), 12);
  return `$${x.toFixed(decimals).replace(/(\.\d\d\d*?)0+$/, "$1")}`;
}

/** An amount of a limit's metric: money for cost, a count otherwise. */
export function amount(metric, x) {
  return metric === "cost" ? usd(x) : num(x);
}

export function ms(x) {
  if (x === null || x === undefined) return "–";
  return x >= 1000 ? `${DEC.format(x / 1000)} s` : `${INT.format(x)} ms`;
}

/** "3 d 4 h", "2 h 5 min", "4 min 10 s", "12 s" for a positive number of seconds. */
export function duration(seconds) {
  let s = Math.max(Math.round(seconds), 0);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const hr = Math.floor(s / 3600);
  s -= hr * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return hr ? `${d} d ${hr} h` : `${d} d`;
  if (hr) return m ? `${hr} h ${m} min` : `${hr} h`;
  if (m) return s ? `${m} min ${s} s` : `${m} min`;
  return `${s} s`;
}

/** "in 4 min 10 s" / "12 s ago" relative to now (both epoch seconds). */
export function relative(at, now) {
  if (at === null || at === undefined) return "–";
  const delta = at - now;
  if (Math.abs(delta) < 1) return "now";
  return delta > 0 ? `in ${duration(delta)}` : `${duration(-delta)} ago`;
}

export function clock(at) {
  return new Date(at * 1000).toLocaleTimeString([], { hour12: false });
}

export function dateTime(at) {
  return new Date(at * 1000).toLocaleString([], { hour12: false });
}

/** "1 key", "2 keys". */
export function plural(n, word) {
  return `${num(n)} ${word}${n === 1 ? "" : "s"}`;
}

export function windowName(window) {
  return window === "once" ? "one-time" : window.startsWith("rolling") ? window : `per ${window}`;
}
