// The live snapshot stream (GET /api/events, Server-Sent Events) read with fetch(), so the
// admin token can travel as a header (EventSource cannot send one). Reconnects by itself,
// also after the server restarts; a stream silent for too long is treated as dead.

const SILENCE_MS = 40000; // the server sends a comment line every 15 s
const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 3000;

function parseBlock(block) {
  const event = { type: "message", data: [], id: null };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const at = line.indexOf(":");
    const field = at < 0 ? line : line.slice(0, at);
    const value = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
    if (field === "event") event.type = value;
    else if (field === "data") event.data.push(value);
    else if (field === "id") event.id = value;
  }
  return event.data.length ? { ...event, data: event.data.join("\n") } : null;
}

/**
 * Follow the stream until stop(): calls onSnapshot(object) for each snapshot,
 * onState("connecting" | "live" | "reconnecting" | "denied", detail).
 * restart() drops the connection and opens a new one at once (after a sign-in).
 */
export function follow({ url, headers, onSnapshot, onState }) {
  let stopped = false;
  let controller = null;
  let wake = null;

  const waitOrWake = (ms) =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });

  async function readAll(resp, signal) {
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let watchdog = setTimeout(() => controller.abort(), SILENCE_MS);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || signal.aborted) return;
        clearTimeout(watchdog);
        watchdog = setTimeout(() => controller.abort(), SILENCE_MS);
        buffer += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = parseBlock(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
          if (event && event.type === "snapshot") onSnapshot(JSON.parse(event.data));
        }
      }
    } finally {
      clearTimeout(watchdog);
    }
  }

  async function run() {
    let delay = MIN_DELAY_MS;
    let first = true;
    while (!stopped) {
      controller = new AbortController();
      onState(first ? "connecting" : "reconnecting");
      first = false;
      try {
        const resp = await fetch(url, {
          headers: { Accept: "text/event-stream", ...headers() },
          cache: "no-store",
          signal: controller.signal,
        });
        if (resp.status === 401 || resp.status === 403) {
          let message = `HTTP ${resp.status}`;
          try {
            message = (await resp.json()).message || message;
          } catch {
            /* keep the status */
          }
          onState("denied", message);
          await waitOrWake(60000);
          continue;
        }
        if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
        onState("live");
        delay = MIN_DELAY_MS;
        await readAll(resp, controller.signal);
      } catch {
        /* refused, reset or aborted: try again below */
      }
      if (stopped) return;
      onState("reconnecting");
      await waitOrWake(delay);
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    }
  }

  run();
  return {
    restart() {
      if (controller) controller.abort();
      if (wake) wake();
    },
    stop() {
      stopped = true;
      if (controller) controller.abort();
      if (wake) wake();
    },
  };
}
