// Building DOM nodes from data. Text always goes in as text nodes, never as HTML, so nothing
// a job carries (payload, error, log line) can become markup or script.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

export function facts(el, pairs) {
  fill(el, pairs.filter(([, value]) => value !== undefined).flatMap(([term, value]) => [
    h("dt", {}, term), h("dd", {}, value === null || value === "" ? "—" : value),
  ]));
}

export function when(iso) {
  if (!iso) return "—";
  const at = new Date(iso);
  return isNaN(at) ? String(iso) : at.toLocaleString();
}

// How far a time is from now, either way: "12 s ago", "in 3 h" (a schedule's next fire is ahead).
export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  const seconds = Math.round((now - new Date(iso).getTime()) / 1000);
  if (!Number.isFinite(seconds)) return String(iso);
  if (Math.abs(seconds) < 2) return "just now";
  const span = spanText(Math.abs(seconds));
  return seconds > 0 ? `${span} ago` : `in ${span}`;
}

function spanText(seconds) {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

export function timeCell(iso) {
  return iso ? h("time", { datetime: iso, title: when(iso) }, ago(iso)) : "—";
}

export function json(value) {
  return value === null || value === undefined ? "—" : JSON.stringify(value, null, 2);
}

// Calls `fn` once, `delayMs` after the last of a burst of calls.
export function debounce(fn, delayMs) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), delayMs);
  };
}

let noticeTimer = null;

// A short message at the top of the page (an action's outcome, an error), read out by screen readers.
export function notify(text, kind = "info") {
  const el = document.getElementById("notice");
  el.textContent = text;
  el.dataset.kind = kind;
  el.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { el.hidden = true; }, 8000);
}
