import assert from "node:assert/strict";
import { test } from "node:test";

import { ADMIN_CONNECTION, HealthModel, categorize, connectionHealth } from "../src/lib/health.js";

test("components are grouped the way the admin API names them", () => {
  assert.deepEqual(categorize("bot:bot-1"), { group: "instances", label: "Bot bot-1" });
  assert.deepEqual(categorize("bot-1/uplink"), { group: "uplinks", label: "bot-1 uplink" });
  assert.deepEqual(categorize("bot-vm:uplink"), { group: "uplinks", label: "bot-vm uplink" });
  assert.deepEqual(categorize("bot-vm:graph_api"), { group: "graph", label: "bot-vm Graph API" });
  assert.equal(categorize("bot-vm:memory").group, "bot-internals");
  assert.deepEqual(categorize("bot:uplink"), { group: "uplinks", label: "bot uplink" }, "an instance named bot");
  assert.deepEqual(categorize("bot-1/graph_api"), { group: "graph", label: "bot-1 Graph API" });
  assert.equal(categorize("bot-1/event_loop").group, "bot-internals");
  assert.equal(categorize("bot-1/new_thing").label, "bot-1 new thing");
  assert.deepEqual(categorize("store"), { group: "store", label: "Store (writer)" });
  assert.deepEqual(categorize("store:ping"), { group: "store", label: "Store (database ping)" });
  assert.equal(categorize("admin:actors").group, "admin");
  assert.equal(categorize(ADMIN_CONNECTION).group, "admin");
  assert.equal(categorize("mystery").group, "other");
});

test("a snapshot replaces the rows; health:changed updates the row keyed by component", () => {
  const h = new HealthModel();
  h.apply({ component: "gone", status: "down", since: 1 });
  h.reset([
    { component: "bot:bot-1", status: "healthy", since: 100, reason: null },
    { component: "bot-1/graph_api", status: "healthy", since: 100, reason: null },
  ]);
  assert.deepEqual([...h.rows.keys()], ["bot:bot-1", "bot-1/graph_api"]);

  const changed = h.apply({ v: 1, instance: "bot-1", component: "bot-1/graph_api", status: "degraded", previous: "healthy", since: 200, reason: "Graph 190: token expired" });
  assert.equal(changed, true);
  const row = h.rows.get("bot-1/graph_api");
  assert.equal(row.status, "degraded");
  assert.equal(row.reason, "Graph 190: token expired");
  assert.equal(row.since, 200);
  assert.equal(h.rows.size, 2);
});

test("an older change never undoes a newer one", () => {
  const h = new HealthModel();
  h.apply({ component: "bot:bot-1", status: "down", since: 300, reason: "no metrics" });
  assert.equal(h.apply({ component: "bot:bot-1", status: "healthy", since: 200 }), false);
  assert.equal(h.rows.get("bot:bot-1").status, "down");
  assert.equal(h.apply({ component: "bot:bot-1", status: "down", since: 300, reason: "no metrics" }), false, "identical: no change");
  assert.equal(h.merge([{ component: "bot:bot-1", status: "healthy", since: 400 }, { component: "store", status: "healthy", since: 10 }]), true);
  assert.equal(h.rows.get("bot:bot-1").status, "healthy");
});

test("unknown statuses are shown as down, malformed rows dropped", () => {
  const h = new HealthModel();
  h.reset([{ component: "x", status: "on fire", since: 1 }, { status: "healthy" }, null]);
  assert.equal(h.rows.size, 1);
  assert.equal(h.rows.get("x").status, "down");
});

test("groups: in order, worst first, then by name; summary counts", () => {
  const h = new HealthModel();
  h.reset([
    { component: "store", status: "healthy", since: 1 },
    { component: "bot:b", status: "healthy", since: 1 },
    { component: "bot:a", status: "healthy", since: 1 },
    { component: "bot:c", status: "stale", since: 1, reason: "no metrics for stale threshold" },
    { component: "bot-1/uplink", status: "degraded", since: 1, reason: "reconnecting" },
  ]);
  h.setLocal(connectionHealth({ kind: "live" }, 5));
  const groups = h.groups();
  assert.deepEqual(groups.map((g) => g.id), ["instances", "uplinks", "admin", "store"]);
  assert.deepEqual(groups[0].rows.map((r) => r.component), ["bot:c", "bot:a", "bot:b"]);
  assert.equal(groups[2].rows[0].component, ADMIN_CONNECTION);
  const s = h.summary();
  assert.equal(s.worst, "stale");
  assert.equal(s.total, 6);
  assert.equal(s.unhealthy, 2);
  assert.equal(s.text, "2 of 6 components need attention");
  h.reset([]);
  h.setLocal(null);
  assert.equal(h.summary().text, "No components reported yet");
});

test("the dashboard's own row follows the connection", () => {
  assert.equal(connectionHealth({ kind: "live" }, 1).status, "healthy");
  assert.equal(connectionHealth({ kind: "syncing" }, 1).status, "degraded");
  const lost = connectionHealth({ kind: "reconnecting", error: "transport close" }, 7);
  assert.equal(lost.status, "down");
  assert.equal(lost.since, 7);
  assert.match(lost.reason, /transport close/);
  assert.match(connectionHealth({ kind: "offline", reason: "network" }, 1).reason, /offline/);
  assert.equal(connectionHealth({ kind: "idle" }, 1), null);
  const h = new HealthModel();
  assert.equal(h.setLocal({ status: "healthy", since: 1 }), true);
  assert.equal(h.setLocal({ status: "healthy", since: 1 }), false);
});
