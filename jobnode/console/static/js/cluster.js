// Cluster: nodes, the fenced leader lease, and the election history.
// Admins read /api/v1/nodes and /api/v1/elections; other roles may read only this node's
// election view, so they see its member list instead (and no history).

import { api } from "./api.js";
import { $, debounce, facts, fill, h, timeCell, when } from "./dom.js";
import { can } from "./session.js";

export const cluster = {
  id: "cluster",

  async refresh() {
    const [leader, detail] = await Promise.all([
      api("/api/v1/leader"),
      can("see-nodes")
        ? Promise.all([api("/api/v1/nodes"), api("/api/v1/elections?limit=20")])
        : api("/api/v1/election"),
    ]);
    renderLease(leader);
    if (Array.isArray(detail)) {
      const [nodes, elections] = detail;
      fill($("#nodes-scope"), "");
      renderNodes(nodes.nodes, leader);
      renderElections(elections.elections);
    } else {
      fill($("#nodes-scope"), "Members as this node sees them; the full node list and the election history need the admin role.");
      renderMembers(detail, leader);
      fill($("#elections"), h("li", { class: "hint" }, "Needs the admin role."));
    }
  },

  onEvent(name) {
    if (name === "leader.changed" || name.startsWith("node.") || name === "stream.gap") this.soon();
  },

  soon: debounce(() => cluster.refresh().catch(() => {}), 300),
};

function renderLease(leader) {
  const lease = leader.lease;
  facts($("#lease"), [
    ["Leader", leader.leader_id],
    ["Address", leader.address],
    ["Lease holder", lease ? lease.holder : "nobody holds the lease"],
    ["Fencing token", lease ? String(lease.fencing_token) : null],
    ["Term", leader.term === null ? null : String(leader.term)],
    ["Algorithm", leader.algorithm],
    ["Since", when(leader.since)],
  ]);
}

function leaderBadge(isLeader) {
  return isLeader ? h("span", { class: "badge leader" }, "★ leader") : "";
}

function renderNodes(nodes, leader) {
  const rows = nodes.map((node) => {
    const isLeader = node.is_leader || node.id === leader.leader_id;
    const state = node.health === "healthy" ? (node.membership || node.role || "up") : node.health;
    return h("tr", { "data-node": node.id, class: isLeader ? "is-leader" : null },
      h("th", { scope: "row" }, node.id),
      h("td", {}, node.address || "—"),
      h("td", {}, h("span", { class: `state state-${node.health}` }, state)),
      h("td", {}, leaderBadge(isLeader)),
      h("td", {}, node.term ?? "—"),
      h("td", {}, node.algorithm || "—"),
      h("td", {}, `${node.workers_busy ?? "—"}/${node.worker_count ?? "—"}`),
      h("td", {}, timeCell(node.last_seen)));
  });
  fill($("#nodes tbody"), rows.length ? rows : h("tr", {}, h("td", { colspan: 8 }, "No node has registered.")));
}

function renderMembers(view, leader) {
  const members = [{ id: view.node_id, address: null, state: view.role }, ...view.members]
    .filter((m, i, all) => all.findIndex((o) => o.id === m.id) === i);
  fill($("#nodes tbody"), members.map((member) => {
    const isLeader = member.id === leader.leader_id;
    return h("tr", { "data-node": member.id, class: isLeader ? "is-leader" : null },
      h("th", { scope: "row" }, member.id),
      h("td", {}, member.address || "—"),
      h("td", {}, h("span", { class: "state" }, member.state || "—")),
      h("td", {}, leaderBadge(isLeader)),
      h("td", {}, member.id === view.node_id ? view.term : "—"),
      h("td", {}, view.current_algorithm),
      h("td", {}, "—"),
      h("td", {}, "—"));
  }));
}

function renderElections(changes) {
  fill($("#elections"), changes.length ? changes.map((change) => h("li", {},
    h("time", { datetime: change.at }, when(change.at)),
    " ",
    h("strong", {}, change.leader),
    ` took the lead (term ${change.term}, fencing token ${change.fencing_token})`,
    change.previous ? ` after ${change.previous}` : "",
    change.reason ? ` — ${change.reason}` : "",
  )) : h("li", { class: "hint" }, "No leader change recorded yet."));
}
