import assert from "node:assert/strict";
import { test } from "node:test";

import { DashboardState } from "../src/lib/state.js";
import { T0, message, metrics, series } from "./fixtures.js";

test("a snapshot replaces metrics, series, health and feed", () => {
  const state = new DashboardState({ feedLimit: 10 });
  state.applyHealth({ component: "old", status: "down", since: 1 });
  state.applyMessage(message({ id: "before" }));
  state.applySnapshot(
    {
      metrics: metrics({ messages_per_minute: 7 }),
      health: [{ component: "bot:bot-1", status: "healthy", since: T0 }],
      feed: [message({ id: "s1" }), message({ id: "s2" })],
    },
    T0 * 1000,
  );
  assert.equal(state.metrics.messages_per_minute, 7);
  assert.deepEqual([...state.health.rows.keys()], ["bot:bot-1"]);
  assert.deepEqual(state.feed.visible().map((e) => e.id), ["s2", "s1"]);
  assert.equal(state.activity.buckets.length, 60);
  assert.equal(state.cards(T0 * 1000)[0].value, "7");
});

test("live events move forward from the snapshot", () => {
  const state = new DashboardState();
  state.applySnapshot({ metrics: metrics(), health: [], feed: [] }, T0 * 1000);
  const v = state.metricsVersion;
  state.applyMetrics(metrics({ messages_per_minute: 99, series: series(T0 + 60 * 60, () => ({ received: 1, answered: 1, failed: 0 })) }), T0 * 1000 + 1000);
  assert.ok(state.metricsVersion > v);
  assert.equal(state.activity.end, T0 + 3600);
  assert.equal(state.applyMessage(message({ id: "live" })), true);
  assert.equal(state.applyHealth({ component: "store", status: "degraded", since: T0, reason: "queue full" }), true);
});

test("an empty snapshot (no bots yet) clears the page rather than keeping old numbers", () => {
  const state = new DashboardState();
  state.applySnapshot({ metrics: metrics(), health: [{ component: "x", status: "healthy", since: 1 }], feed: [message()] }, 1000);
  state.applySnapshot({}, 2000);
  assert.equal(state.metrics, null);
  assert.equal(state.health.rows.size, 0);
  assert.equal(state.feed.items.length, 0);
});

test("the conversation model collects the user's live messages", () => {
  const state = new DashboardState();
  state.applyMessage(message({ id: "a", user: "u_aaaaaaaaaa" }));
  const c = state.openConversation("u_aaaaaaaaaa");
  assert.equal(c.items.length, 1, "what the feed already had");
  state.applyMessage(message({ id: "b", user: "u_bbbbbbbbbb" }));
  state.applyMessage(message({ id: "c", user: "u_aaaaaaaaaa" }));
  assert.deepEqual(c.items.map((e) => e.id), ["a", "c"]);
  state.closeConversation();
  assert.equal(state.conversation, null);
});

test("tick rolls the chart forward; clear forgets everything", () => {
  const state = new DashboardState();
  state.applyMetrics(metrics(), (T0 + 59 * 60 + 1) * 1000);
  assert.equal(state.tick((T0 + 62 * 60) * 1000), true);
  state.clear();
  assert.equal(state.metrics, null);
  assert.equal(state.activity.buckets.length, 0);
  assert.equal(state.trends.samples.length, 0);
});
