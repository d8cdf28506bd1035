// The event stream (Server-Sent Events from /api/v1/events). An EventSource cannot send an
// Authorization header, so each connection first asks for a 60-second stream token
// (POST /api/v1/events/token, with the bearer token in the header) and passes it as
// ?access_token=; that token opens event streams only and is useless once they are open.
// The browser's own reconnect would reuse an expired token, so this code reconnects itself:
// it closes the broken source, says so on the page, and opens a new one after a short
// backoff, resuming after the last event it got (?last_event_id=).

import { api } from "./api.js";
import { session } from "./session.js";

const EVENTS = [
  "job.submitted", "job.started", "job.progress", "job.failed", "job.retrying", "job.completed",
  "job.dead", "job.cancelled", "node.joined", "node.left", "node.down", "leader.changed", "stream.gap",
];
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];

export async function streamUrl(path, params = {}) {
  const query = new URLSearchParams(params);
  if (session.token) {
    const issued = await api("/api/v1/events/token", { method: "POST" });
    query.set("access_token", issued.token);
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export class LiveStream {
  constructor(indicator, onEvent) {
    this.indicator = indicator;
    this.onEvent = onEvent;
    this.source = null;
    this.lastId = null;
    this.failures = 0;
    this.timer = null;
    this.running = false;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.connect();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    this.source = null;
    this.show("idle", "");
  }

  show(state, text) {
    this.indicator.dataset.state = state;
    this.indicator.textContent = text;
  }

  async connect() {
    if (!this.running) return;
    this.show(this.failures ? "lost" : "connecting", this.failures ? "Stream lost, reconnecting…" : "Connecting…");
    let url;
    try {
      url = await streamUrl("/api/v1/events", this.lastId ? { last_event_id: this.lastId } : {});
    } catch {
      this.retry();
      return;
    }
    if (!this.running) return;
    const source = new EventSource(url);
    this.source = source;
    source.onopen = () => {
      this.failures = 0;
      this.show("live", "Live");
    };
    source.onerror = () => {
      source.close();
      if (this.source === source) this.retry();
    };
    for (const name of EVENTS) {
      source.addEventListener(name, (message) => {
        if (message.lastEventId) this.lastId = message.lastEventId;
        let data = {};
        try {
          data = JSON.parse(message.data);
        } catch {
          return;
        }
        if (name === "stream.gap") this.lastId = null; // resume from now; the views reload in full
        this.onEvent(name, data);
      });
    }
  }

  retry() {
    if (!this.running) return;
    this.source = null;
    const delay = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)];
    this.failures += 1;
    this.show("lost", "Stream lost, reconnecting…");
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
