// A small line chart in SVG: throughput points ([epoch_s, value]) over a fixed window ending now.

import { svg } from "./dom.js";

const WIDTH = 640, HEIGHT = 180, LEFT = 44, RIGHT = 8, TOP = 10, BOTTOM = 24;

export function lineChart(points, { windowS, nowS, unit, label }) {
  const start = nowS - windowS;
  const shown = points.filter(([at]) => at >= start);
  const peak = Math.max(1, ...shown.map(([, value]) => value));
  const top = niceCeiling(peak);
  const x = (at) => LEFT + ((at - start) / windowS) * (WIDTH - LEFT - RIGHT);
  const y = (value) => TOP + (1 - value / top) * (HEIGHT - TOP - BOTTOM);
  const last = shown.length ? shown[shown.length - 1][1] : null;
  const summary = shown.length
    ? `${label}: ${shown.length} points, latest ${format(last)} ${unit}, peak ${format(peak)} ${unit}`
    : `${label}: no points yet (the node samples every few seconds)`;
  const grid = [0, 0.5, 1].map((share) => [
    svg("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: y(top * share), y2: y(top * share), class: "grid" }),
    svg("text", { x: LEFT - 6, y: y(top * share) + 4, class: "axis", "text-anchor": "end" }, format(top * share)),
  ]);
  const ticks = [0, 15, 30, 45, 60].map((minutes) => {
    const at = start + (minutes / 60) * windowS;
    return svg("text", { x: x(at), y: HEIGHT - 6, class: "axis", "text-anchor": minutes === 60 ? "end" : "middle" },
      minutes === 60 ? "now" : `−${60 - minutes} min`);
  });
  const path = shown.map(([at, value], i) => `${i ? "L" : "M"}${x(at).toFixed(1)},${y(value).toFixed(1)}`).join(" ");
  const area = shown.length
    ? `${path} L${x(shown[shown.length - 1][0]).toFixed(1)},${y(0)} L${x(shown[0][0]).toFixed(1)},${y(0)} Z`
    : "";
  return svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": summary, class: "line-chart" },
    svg("title", {}, summary),
    grid,
    ticks,
    area ? svg("path", { d: area, class: "area" }) : null,
    path ? svg("path", { d: path, class: "line" }) : null,
    svg("text", { x: WIDTH - RIGHT - 4, y: TOP + 14, class: "axis", "text-anchor": "end" }, unit));
}

function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function format(value) {
  if (value === null || value === undefined) return "—";
  return value >= 100 ? Math.round(value).toString() : (+value.toFixed(2)).toString();
}
