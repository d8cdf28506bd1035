// One job: its fields, payload, result, each attempt's error, progress, logs and a timeline.
// The timeline joins what the job record says (submitted, each failed attempt, started,
// finished) with the job's own event stream (/api/v1/jobs/{id}/events) while the page is
// open, which adds progress reports and retries as they happen; the stream closes after the
// job's terminal event. For a job that has finished, the node sends only that last event.

import { actionButtons } from "./actions.js";
import { api } from "./api.js";
import { $, debounce, facts, fill, h, json, when } from "./dom.js";
import { streamUrl } from "./live.js";

const TERMINAL_EVENTS = new Set(["job.completed", "job.dead", "job.cancelled"]);
const TIMELINE_EVENTS = ["job.submitted", "job.started", "job.progress", "job.failed", "job.retrying",
  "job.completed", "job.dead", "job.cancelled"];

let current = null; // the job id shown
let timeline = null; // its EventSource
let streamed = []; // events the stream brought for it
let record = null; // the last read of the job

export const job = {
  id: "job",

  enter(id) {
    if (!/^[0-9a-f]{32}$/.test(id || "")) {
      location.hash = "#jobs";
      return;
    }
    if (id === current) return;
    this.leave();
    current = id;
    streamed = [];
    record = null;
    fill($("#job-title"), `Job ${id}`);
    fill($("#job-timeline"));
    openTimeline(id);
  },

  leave() {
    if (timeline) timeline.close();
    timeline = null;
    current = null;
  },

  async refresh() {
    if (!current) return;
    const id = current;
    const [found, logs] = await Promise.all([api(`/api/v1/jobs/${id}`), api(`/api/v1/jobs/${id}/logs`)]);
    if (id !== current) return;
    render(found, logs.lines);
  },

  onEvent(name, data) {
    if (!current || data.job !== current) return;
    if (name === "job.progress") renderProgress({ fraction: data.fraction, message: data.message });
    this.soon();
  },

  soon: debounce(() => job.refresh().catch(() => {}), 400),
};

function render(found, lines) {
  fill($("#job-actions"), actionButtons(found, () => job.refresh().catch(() => {})));
  facts($("#job-facts"), [
    ["Status", h("span", { class: `status status-${found.status}`, id: "job-status" }, found.status)],
    ["Type", found.type],
    ["Queue", found.queue],
    ["Priority", String(found.priority)],
    ["Attempts", `${found.attempts} of ${found.max_retries + 1}`],
    ["Idempotency key", found.idempotency_key],
    ["Submitted by", found.submitted_by],
    ["Created", when(found.created_at)],
    ["Started", when(found.started_at)],
    ["Finished", when(found.finished_at)],
    ["Node / worker", found.worker_id || found.node_id],
    ["Last error", found.error],
  ]);
  // A finished job's last report may predate its end: say how it ended instead.
  renderProgress(found.status === "completed" ? { fraction: 1, message: "completed" } : found.progress);
  fill($("#job-payload"), json(found.payload));
  fill($("#job-result"), json(found.result));
  const errors = Array.isArray(found.errors) ? found.errors : [];
  fill($("#job-errors"), errors.length ? errors.map((entry) => h("li", {},
    h("strong", {}, `Attempt ${entry.attempt ?? "?"}`), entry.at ? ` (${when(entry.at)})` : "", ": ",
    h("span", { class: "mono" }, entry.error ?? JSON.stringify(entry)))) : h("li", { class: "hint" }, "No attempt failed."));
  record = found;
  renderTimeline();
  fill($("#job-logs"), lines.length
    ? lines.map((line) => `${when(line.at)}  [attempt ${line.attempt}]  ${line.message}\n`).join("")
    : "No log lines.");
}

function renderProgress(progress) {
  if (!progress || progress.fraction === undefined) {
    fill($("#job-progress"), h("span", { class: "hint" }, "No progress reported."));
    return;
  }
  const percent = Math.round(progress.fraction * 100);
  fill($("#job-progress"),
    h("progress", { max: "100", value: String(percent), "aria-label": "Progress" }, `${percent}%`),
    ` ${percent}%`, progress.message ? ` — ${progress.message}` : "");
}

async function openTimeline(id) {
  let url;
  try {
    url = await streamUrl(`/api/v1/jobs/${id}/events`);
  } catch {
    fill($("#job-timeline"), h("li", { class: "hint" }, "The timeline could not be opened."));
    return;
  }
  if (id !== current) return;
  const source = new EventSource(url);
  timeline = source;
  source.onerror = () => source.close(); // the stream ended after the terminal event, or broke
  for (const name of TIMELINE_EVENTS) {
    source.addEventListener(name, (message) => {
      let data = {};
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      streamed.push({ name, at: data.at, data });
      renderTimeline();
      if (TERMINAL_EVENTS.has(name)) source.close();
    });
  }
}

function fromRecord(found) {
  const entries = [{ name: "job.submitted", at: found.created_at, data: {} }];
  for (const entry of Array.isArray(found.errors) ? found.errors : []) {
    const at = entry.at_ms ? new Date(entry.at_ms).toISOString() : null;
    if (at) entries.push({ name: "job.failed", at, data: { attempt: entry.attempt, error: entry.error } });
  }
  if (found.started_at) {
    entries.push({ name: "job.started", at: found.started_at, data: { attempt: found.attempts, worker: found.worker_id, node: found.node_id } });
  }
  const terminal = { completed: "job.completed", failed: "job.dead", cancelled: "job.cancelled" }[found.status];
  if (terminal && found.finished_at) entries.push({ name: terminal, at: found.finished_at, data: { attempt: found.attempts } });
  return entries;
}

// One entry per event and attempt (progress reports each count); the stream's own wins.
function renderTimeline() {
  const entries = new Map();
  const keyOf = (entry) => entry.name === "job.progress" ? `${entry.name}@${entry.at}` : `${entry.name}#${entry.data.attempt || 0}`;
  for (const entry of record ? fromRecord(record) : []) entries.set(keyOf(entry), entry);
  for (const entry of streamed) entries.set(keyOf(entry), entry);
  const sorted = [...entries.values()].sort((a, b) => String(a.at).localeCompare(String(b.at)));
  fill($("#job-timeline"), sorted.map((entry) => h("li", { "data-event": entry.name },
    h("time", { datetime: entry.at }, when(entry.at)), " ", h("strong", {}, entry.name), describe(entry.name, entry.data))));
}

function describe(name, data) {
  const parts = [];
  if (data.attempt) parts.push(`attempt ${data.attempt}`);
  if (data.node) parts.push(`on ${data.worker || data.node}`);
  if (name === "job.progress") parts.push(`${Math.round((data.fraction || 0) * 100)}%${data.message ? `: ${data.message}` : ""}`);
  if (data.error) parts.push(data.error);
  if (data.duration_ms !== undefined) parts.push(`${data.duration_ms} ms`);
  if (data.by) parts.push(`by ${data.by}`);
  return parts.length ? ` — ${parts.join(", ")}` : "";
}
