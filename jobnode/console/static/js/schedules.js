// Schedules and flow limits: list, pause, resume. A node without those routes answers 404,
// and the page says they are not available there instead of failing.

import { api } from "./api.js";
import { $, fill, h, notify, timeCell } from "./dom.js";
import { can } from "./session.js";

export const schedules = {
  id: "schedules",

  async refresh() {
    await Promise.all([refreshSchedules(), refreshLimits()]);
  },

  onEvent() {},
};

async function listOrMissing(path, key, missing) {
  try {
    const body = await api(path);
    $(missing).hidden = true;
    return body[key];
  } catch (error) {
    if (error.status !== 404) throw error;
    $(missing).hidden = false;
    return null;
  }
}

async function refreshSchedules() {
  const rows = await listOrMissing("/api/v1/schedules", "schedules", "#schedules-missing");
  $("#schedules").closest(".scroll").hidden = rows === null;
  if (rows === null) return;
  fill($("#schedules tbody"), rows.length ? rows.map((s) => h("tr", { "data-schedule": s.name, "data-paused": String(s.paused) },
    h("th", { scope: "row" }, s.name),
    h("td", { "data-field": "timing" }, s.cron ? h("code", {}, s.cron) : `every ${s.every_seconds} s`),
    h("td", { "data-field": "timezone" }, s.timezone),
    h("td", {}, `${s.job.type} → ${s.job.queue || "default"}`),
    // A paused schedule has no next fire: resuming counts from then, without catching up.
    h("td", { "data-field": "next" }, s.paused ? "—" : timeCell(s.next_fire_at)),
    // last_fire_at is the last fire time the leader dealt with, which a resume or a skipped
    // overlap moves too; the job link shows what it last made.
    h("td", { "data-field": "last" }, timeCell(s.last_fire_at),
      s.last_job_id ? [" · ", h("a", { href: `#job/${s.last_job_id}` }, "last job")] : null),
    h("td", { "data-field": "state" }, stateBadge(s.paused, "active")),
    h("td", { class: "row-actions" }, steerButton(`/api/v1/schedules/${encodeURIComponent(s.name)}`,
      s.paused, `schedule ${s.name}`)),
  )) : h("tr", {}, h("td", { colspan: 8 }, "No schedule.")));
}

async function refreshLimits() {
  const rows = await listOrMissing("/api/v1/limits", "limits", "#limits-missing");
  $("#limits").closest(".scroll").hidden = rows === null;
  if (rows === null) return;
  fill($("#limits tbody"), rows.length ? rows.map((l) => h("tr", { "data-limit": `${l.scope}/${l.name}`, "data-paused": String(l.paused) },
    h("td", {}, l.scope),
    h("th", { scope: "row" }, l.scope === "user" && l.name === "*" ? "* (each user)" : l.name),
    h("td", { "data-field": "rate" }, l.rate ? `${l.rate.count} per ${l.rate.per}` : "—"),
    h("td", { "data-field": "concurrency" }, l.concurrency ?? "—"),
    h("td", { "data-field": "running" }, l.running),
    h("td", { "data-field": "waiting" }, l.waiting),
    h("td", { "data-field": "state" }, stateBadge(l.paused, "open")),
    h("td", { class: "row-actions" }, steerButton(
      `/api/v1/limits/${encodeURIComponent(l.scope)}/${encodeURIComponent(l.name)}`, l.paused,
      `${l.scope} ${l.name}`)),
  )) : h("tr", {}, h("td", { colspan: 8 }, "No limit set.")));
}

function stateBadge(paused, otherwise) {
  return h("span", { class: paused ? "status status-cancelled" : "status status-running" },
    paused ? "paused" : otherwise);
}

function steerButton(path, paused, what) {
  if (!can("steer")) return "";
  const verb = paused ? "resume" : "pause";
  const label = paused ? "Resume" : "Pause";
  return h("button", {
    type: "button", class: "small", "data-action": verb, "aria-label": `${label} ${what}`,
    onclick: async () => {
      try {
        await api(`${path}/${verb}`, { method: "POST" });
        notify(`${label}d ${what}.`);
      } catch (error) {
        notify(`Could not ${verb} ${what}: ${error.message}`, "error");
      }
      schedules.refresh().catch(() => {});
    },
  }, label);
}
