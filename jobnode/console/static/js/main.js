// The console's entry point: finds out whether auth is on, logs in, routes between the
// sections (#cluster, #queues, #jobs, #job/<id>, #schedules), keeps the event stream open
// and refreshes the visible section every POLL_MS as a fallback (never more often).

import { api } from "./api.js";
import { cluster } from "./cluster.js";
import { $, fill, notify } from "./dom.js";
import { job } from "./job.js";
import { jobs } from "./jobs.js";
import { LiveStream } from "./live.js";
import { queues } from "./queues.js";
import { schedules } from "./schedules.js";
import { clearSession, loadSession, saveSession, session } from "./session.js";

const POLL_MS = 5000;
const VIEWS = { cluster, queues, jobs, job, schedules };

let active = null;
let poller = null;
const live = new LiveStream($("#live"), (name, data) => {
  for (const view of Object.values(VIEWS)) {
    if (view === active || name === "stream.gap") view.onEvent(name, data);
  }
});

function showOnly(id) {
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== id;
}

function route() {
  if (!session.started) return;
  const [name, argument] = location.hash.replace(/^#/, "").split("/");
  const view = VIEWS[name] || cluster;
  if (active && active !== view && active.leave) active.leave();
  active = view;
  showOnly(`view-${view.id}`);
  for (const link of document.querySelectorAll("#nav a")) {
    const current = link.dataset.view === view.id || (view.id === "job" && link.dataset.view === "jobs");
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (view.enter) view.enter(argument);
  refresh();
}

async function refresh() {
  const view = active;
  if (!view) return;
  try {
    await view.refresh();
  } catch (error) {
    if (error.status !== 401) notify(`Could not load ${view.id}: ${error.message}`, "error");
  }
}

function start() {
  session.started = true;
  $("#nav").hidden = false;
  $("#logout").hidden = !session.authOn;
  fill($("#who"), session.authOn ? `${session.user} (${session.role})` : "auth off");
  $("#who").dataset.role = session.authOn ? session.role : "admin";
  live.start();
  clearInterval(poller);
  poller = setInterval(refresh, POLL_MS);
  route();
}

function stop() {
  session.started = false;
  live.stop();
  clearInterval(poller);
  if (active && active.leave) active.leave();
  active = null;
  $("#nav").hidden = true;
  $("#logout").hidden = true;
  fill($("#who"), "");
}

function showLogin(message = "") {
  stop();
  showOnly("view-login");
  fill($("#login-error"), message);
  $("#login-username").focus();
}

async function login(event) {
  event.preventDefault();
  const form = event.target;
  const username = form.username.value;
  fill($("#login-error"), "");
  try {
    const issued = await api("/auth/login", { method: "POST", body: { username, password: form.password.value } });
    form.reset();
    saveSession(issued.access_token, issued.role, username);
    start();
  } catch (error) {
    fill($("#login-error"), error.message);
  }
}

function logout() {
  clearSession();
  showLogin("Logged out.");
}

async function boot() {
  loadSession();
  jobs.init();
  $("#login-form").addEventListener("submit", login);
  $("#logout").addEventListener("click", logout);
  window.addEventListener("hashchange", route);
  window.addEventListener("jobnode:unauthorized", () => {
    if (session.started && session.authOn) {
      clearSession();
      showLogin("Your session ended: log in again.");
    }
  });
  try {
    // Any role may read the stats; with auth off no token is needed, with auth on a missing
    // or expired token gets a 401, which is how the page knows to ask for a login.
    await api("/api/v1/stats");
    session.authOn = Boolean(session.token);
    start();
  } catch (error) {
    if (error.status === 401) {
      const expired = Boolean(session.token);
      session.authOn = true;
      clearSession();
      showLogin(expired ? "Your session ended: log in again." : "");
    } else {
      notify(`The node did not answer: ${error.message}`, "error");
    }
  }
}

boot();
