// Job actions by role: cancel (user and admin, own jobs for users), retry and delete (admin).
// "Replay" is a retry of a failed job: it takes the job out of the dead-letter set and runs it again.

import { api } from "./api.js";
import { h, notify } from "./dom.js";
import { can } from "./session.js";

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

export const ACTIONS = {
  cancel: {
    label: () => "Cancel",
    allowed: (job) => can("cancel") && !TERMINAL.has(job.status),
    run: (id) => api(`/api/v1/jobs/${id}/cancel`, { method: "POST" }),
  },
  retry: {
    label: (job) => (job.status === "failed" ? "Replay" : "Retry"),
    allowed: (job) => can("retry") && (job.status === "failed" || job.status === "cancelled"),
    run: (id) => api(`/api/v1/jobs/${id}/retry`, { method: "POST" }),
  },
  delete: {
    label: () => "Delete",
    allowed: () => can("delete"),
    run: (id) => api(`/api/v1/jobs/${id}`, { method: "DELETE" }),
    confirm: (count) => `Delete ${count} job(s) for good? This cannot be undone.`,
  },
};

export function actionButtons(job, done) {
  return Object.entries(ACTIONS).filter(([, action]) => action.allowed(job)).map(([name, action]) => {
    const label = action.label(job);
    return h("button", {
      type: "button", class: name === "delete" ? "small danger" : "small", "data-action": name,
      "aria-label": `${label} job ${job.id}`,
      onclick: async () => {
        await runAction(name, [job.id]);
        done();
      },
    }, label);
  });
}

// Runs one action over several jobs, one request each (the API has no bulk route); says how it
// went. False when it did nothing (no job, or the confirmation was declined).
export async function runAction(name, ids) {
  const action = ACTIONS[name];
  if (!ids.length) return false;
  if (action.confirm && !window.confirm(action.confirm(ids.length))) return false;
  const failures = [];
  for (const id of ids) {
    try {
      await action.run(id);
    } catch (error) {
      failures.push(`${id.slice(0, 8)}…: ${error.message}`);
    }
  }
  const done = ids.length - failures.length;
  const verb = { cancel: "cancelled", retry: "queued again", delete: "deleted" }[name];
  if (failures.length) notify(`${done} of ${ids.length} job(s) ${verb}; refused: ${failures.join("; ")}`, "error");
  else notify(`${done} job(s) ${verb}.`);
  return true;
}
