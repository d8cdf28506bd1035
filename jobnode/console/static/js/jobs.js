// Jobs: the list with filters and cursor paging, selection for actions on many jobs, and live
// status changes from the event stream.

import { ACTIONS, actionButtons, runAction } from "./actions.js";
import { api } from "./api.js";
import { $, debounce, fill, h, notify, timeCell } from "./dom.js";
import { can } from "./session.js";

const PAGE_SIZE = 25;
const JOB_ID = /^[0-9a-f]{32}$/;
// The status a job has after each event (job.failed is followed by retrying or dead).
const STATUS_AFTER = {
  "job.submitted": "pending", "job.started": "running", "job.retrying": "retrying",
  "job.completed": "completed", "job.dead": "failed", "job.cancelled": "cancelled",
};

const state = { filters: {}, cursors: [null], page: 0, nextCursor: null, jobs: [], selected: new Set() };

export const jobs = {
  id: "jobs",

  init() {
    const form = $("#job-filters");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      state.filters = readFilters(form);
      restart();
    });
    form.addEventListener("reset", () => {
      state.filters = {};
      setTimeout(restart, 0);
    });
    $("#page-older").addEventListener("click", () => {
      if (!state.nextCursor) return;
      state.page += 1;
      state.cursors[state.page] = state.nextCursor;
      reload();
    });
    $("#page-newer").addEventListener("click", () => {
      if (state.page === 0) return;
      state.page -= 1;
      reload();
    });
    $("#select-all").addEventListener("change", (event) => {
      for (const job of state.jobs) {
        if (event.target.checked) state.selected.add(job.id);
        else state.selected.delete(job.id);
      }
      render();
    });
    for (const button of document.querySelectorAll("#bulk [data-bulk]")) {
      button.addEventListener("click", async () => {
        // The selection is taken now: rows picked while these requests run (their events can
        // redraw the list before the last answer) make a new selection, which stays.
        const ids = [...state.selected];
        state.selected.clear();
        render();
        if (!(await runAction(button.dataset.bulk, ids))) {
          for (const id of ids) state.selected.add(id);
          render();
          return;
        }
        reload();
      });
    }
  },

  async refresh() {
    const denied = !can("see-jobs");
    $("#jobs-denied").hidden = !denied;
    $("#job-filters").hidden = denied;
    $("#jobs").closest(".scroll").hidden = denied;
    $(".pager").hidden = denied;
    if (denied) {
      fill($("#jobs-denied"), "Your role may not see jobs (it reads cluster state only).");
      $("#bulk").hidden = true;
      return;
    }
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    for (const [name, value] of Object.entries(state.filters)) if (value) query.set(name, value);
    const cursor = state.cursors[state.page];
    if (cursor) query.set("cursor", cursor);
    const page = await api(`/api/v1/jobs?${query}`);
    state.jobs = page.jobs;
    state.nextCursor = page.next_cursor;
    const shown = new Set(page.jobs.map((job) => job.id));
    for (const id of state.selected) if (!shown.has(id)) state.selected.delete(id);
    render();
  },

  onEvent(name, data) {
    if (name === "stream.gap") return this.soon();
    if (!name.startsWith("job.")) return;
    const job = state.jobs.find((row) => row.id === data.job);
    if (job && STATUS_AFTER[name]) {
      job.status = STATUS_AFTER[name];
      if (data.attempt) job.attempts = data.attempt;
      render();
    }
    // New jobs show on the first page; the read also brings the fields an event does not carry.
    if (state.page === 0 && (name === "job.submitted" || job)) this.soon();
  },

  soon: debounce(() => reload(), 700),
};

function reload() {
  return jobs.refresh().catch((error) => {
    if (error.status !== 401) notify(`Could not load the jobs: ${error.message}`, "error");
  });
}

function readFilters(form) {
  const data = new FormData(form);
  const filters = {
    status: data.get("status"), type: data.get("type").trim(), queue: data.get("queue").trim(),
  };
  const key = data.get("key").trim();
  if (key) filters[JOB_ID.test(key) ? "id" : "idempotency_key"] = key;
  return filters;
}

function restart() {
  state.cursors = [null];
  state.page = 0;
  state.selected.clear();
  reload();
}

function render() {
  const rows = state.jobs.map((job) => h("tr", { "data-job": job.id, "data-status": job.status },
    h("td", {}, h("input", {
      type: "checkbox", "aria-label": `Select job ${job.id}`, checked: state.selected.has(job.id),
      onchange: (event) => {
        if (event.target.checked) state.selected.add(job.id);
        else state.selected.delete(job.id);
        renderBulk();
      },
    })),
    h("th", { scope: "row" }, h("a", { href: `#job/${job.id}`, class: "mono" }, job.id.slice(0, 12) + "…")),
    h("td", {}, job.type),
    h("td", {}, job.queue),
    h("td", {}, h("span", { class: `status status-${job.status}` }, job.status)),
    h("td", {}, job.priority),
    h("td", {}, `${job.attempts}/${job.max_retries + 1}`),
    h("td", {}, timeCell(job.created_at)),
    h("td", { class: "row-actions" }, actionButtons(job, () => reload()))));
  fill($("#jobs tbody"), rows.length ? rows : h("tr", {}, h("td", { colspan: 9 }, "No job matches.")));
  $("#page-newer").disabled = state.page === 0;
  $("#page-older").disabled = !state.nextCursor;
  fill($("#page-number"), `page ${state.page + 1}`);
  $("#select-all").checked = state.jobs.length > 0 && state.jobs.every((job) => state.selected.has(job.id));
  renderBulk();
}

function renderBulk() {
  const bulk = $("#bulk");
  const anyAction = Object.entries(ACTIONS).some(([name]) => can(name));
  bulk.hidden = !anyAction || state.selected.size === 0;
  fill($("#bulk-count"), `${state.selected.size} selected`);
  for (const button of bulk.querySelectorAll("[data-bulk]")) button.hidden = !can(button.dataset.bulk);
}
