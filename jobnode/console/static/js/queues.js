// Queues: depth by queue, state and priority band; the hour of throughput; unroutable jobs.

import { api } from "./api.js";
import { lineChart } from "./chart.js";
import { $, debounce, facts, fill, h } from "./dom.js";

export const queues = {
  id: "queues",

  async refresh() {
    const [figures, stats] = await Promise.all([api("/api/v1/queues"), api("/api/v1/stats")]);
    renderCounts(stats);
    renderQueues(figures.queues);
    const windowS = figures.throughput.window_s;
    fill($("#throughput"), lineChart(figures.throughput.points, {
      windowS, nowS: Date.now() / 1000, unit: "jobs/s", label: "Jobs completed per second, whole cluster",
    }));
    renderUnroutable(stats, figures.queues);
  },

  onEvent(name) {
    if (name.startsWith("job.") || name === "stream.gap") this.soon();
  },

  soon: debounce(() => queues.refresh().catch(() => {}), 1000),
};

function renderCounts(stats) {
  const jobs = stats.jobs || {};
  const queue = stats.queue || {};
  facts($("#job-counts"), [
    ...Object.entries(jobs).map(([status, count]) => [status, String(count)]),
    ["dead-letter", queue.dead_letter === undefined ? undefined : String(queue.dead_letter)],
  ]);
}

function renderQueues(rows) {
  fill($("#queues tbody"), rows.length ? rows.map((row) => h("tr", { "data-queue": row.queue },
    h("th", { scope: "row" }, row.queue),
    h("td", {}, row.ready),
    h("td", {}, row.by_priority.high),
    h("td", {}, row.by_priority.normal),
    h("td", {}, row.by_priority.low),
    h("td", {}, row.delayed),
    h("td", {}, row.processing),
    h("td", { class: row.unroutable ? "warn" : null }, row.unroutable),
  )) : h("tr", {}, h("td", { colspan: 8 }, "No queue has jobs or workers.")));
}

function renderUnroutable(stats, rows) {
  const detail = (stats.queue && Array.isArray(stats.queue.unroutable)) ? stats.queue.unroutable : null;
  const items = detail
    ? detail.map((route) => h("li", {}, `${route.jobs} ${route.type} job(s) in queue ${route.queue}`))
    : rows.filter((row) => row.unroutable).map((row) => h("li", {}, `${row.unroutable} job(s) in queue ${row.queue}`));
  fill($("#unroutable"), items.length ? items : h("li", { class: "hint" }, "None: every ready job has a node that can run it."));
}
