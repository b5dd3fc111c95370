import assert from "node:assert/strict";
import { test } from "node:test";

import { CARD_SPECS, buildCards, describeTrend, previousValues, trendSample } from "../src/lib/cards.js";
import { TrendTracker, trendDirection, trendSentiment } from "../src/lib/trend.js";
import { metrics } from "./fixtures.js";

test("direction against the previous window, with a tolerance", () => {
  assert.equal(trendDirection(12, 10), "up");
  assert.equal(trendDirection(8, 10), "down");
  assert.equal(trendDirection(10.4, 10), "flat", "within 5%");
  assert.equal(trendDirection(0, 0), "flat");
  assert.equal(trendDirection(3, 0), "up");
  assert.equal(trendDirection(2, 1, { absolute: 1 }), "flat", "a change of one message is noise");
  assert.equal(trendDirection(3, 1, { absolute: 1 }), "up");
  assert.equal(trendDirection(null, 10), "unknown");
  assert.equal(trendDirection(10, undefined), "unknown");
  assert.equal(trendDirection(Number.NaN, 1), "unknown");
});

test("sentiment depends on whether up is good", () => {
  assert.equal(trendSentiment("up", "higher-is-better"), "good");
  assert.equal(trendSentiment("down", "higher-is-better"), "bad");
  assert.equal(trendSentiment("up", "lower-is-better"), "bad");
  assert.equal(trendSentiment("down", "lower-is-better"), "good");
  assert.equal(trendSentiment("up", "neutral"), "neutral");
  assert.equal(trendSentiment("flat", "lower-is-better"), "neutral");
  assert.equal(trendSentiment("unknown", "higher-is-better"), "neutral");
});

test("the tracker answers with the value one window ago, or nothing", () => {
  const tracker = new TrendTracker({ windowMs: 60_000, toleranceMs: 15_000 });
  assert.equal(tracker.previous("x", 100_000), null, "nothing recorded yet");
  for (let t = 0; t <= 120_000; t += 1000) tracker.record(t, { x: t / 1000 });
  assert.equal(tracker.previous("x", 120_000), 60, "the sample taken 60 s earlier");
  assert.equal(tracker.previous("y", 120_000), null, "unknown key");
});

test("the tracker needs a sample near one window ago", () => {
  const tracker = new TrendTracker({ windowMs: 60_000, toleranceMs: 15_000 });
  tracker.record(0, { x: 1 });
  assert.equal(tracker.previous("x", 30_000), null, "30 s is not the previous minute");
  assert.equal(tracker.previous("x", 50_000), 1, "10 s off is within tolerance");
  assert.equal(tracker.previous("x", 90_000), null, "too old");
});

test("the tracker is bounded and spaced", () => {
  const tracker = new TrendTracker({ keepMs: 120_000, minSpacingMs: 1000 });
  for (let t = 0; t < 600_000; t += 100) tracker.record(t, { x: 1 });
  assert.ok(tracker.samples.length <= 136, `kept ${tracker.samples.length}`);
  tracker.record(0, { x: 5 });
  assert.equal(tracker.samples.length, 1, "a clock that went backwards starts over");
});

test("the message rate uses the server's previous window when it has one", () => {
  const tracker = new TrendTracker();
  const m = metrics({ messages_per_minute: 40, messages_per_minute_previous: 30 });
  const previous = previousValues(m, tracker, 0);
  assert.equal(previous.messages_per_minute, 30);
  assert.equal(previous.answered, null);
  const none = previousValues(metrics({ messages_per_minute_previous: null }), tracker, 0);
  assert.equal(none.messages_per_minute, null);
});

test("cards show values, details and trends", () => {
  const tracker = new TrendTracker();
  tracker.record(0, trendSample(metrics({ answered: 20, error_rate: 0.01, latency_p95_ms: 300, active_users: 12, instances_connected: 3, uptime_s: 3665 })));
  const now = 60_000;
  const m = metrics();
  tracker.record(now, trendSample(m));
  const cards = buildCards(m, previousValues(m, tracker, now));
  const byId = Object.fromEntries(cards.map((c) => [c.id, c]));
  assert.deepEqual(cards.map((c) => c.id), CARD_SPECS.map((s) => s.id));

  assert.equal(byId["messages-per-minute"].value, "40");
  assert.equal(byId["messages-per-minute"].trend.direction, "up");
  assert.equal(byId["messages-per-minute"].trend.sentiment, "neutral");
  assert.match(byId["messages-per-minute"].trend.text, /^Up \+33% vs previous minute$/);

  assert.equal(byId.answered.value, "38");
  assert.equal(byId.answered.detail, "2 failed in the last minute");
  assert.equal(byId.answered.trend.sentiment, "good");

  assert.equal(byId["error-rate"].value, "5%");
  assert.equal(byId["error-rate"].trend.direction, "up");
  assert.equal(byId["error-rate"].trend.sentiment, "bad");
  assert.match(byId["error-rate"].trend.text, /\+4 pp/);

  assert.equal(byId.latency.value, "180 ms");
  assert.deepEqual(byId.latency.parts, [
    { label: "p50", value: "40 ms" },
    { label: "p95", value: "180 ms" },
    { label: "p99", value: "420 ms" },
  ]);
  assert.equal(byId.latency.trend.direction, "down");
  assert.equal(byId.latency.trend.sentiment, "good");

  assert.equal(byId["active-users"].value, "12");
  assert.equal(byId["active-users"].trend.direction, "flat");
  assert.equal(byId["active-users"].trend.text, "Steady vs previous minute");

  assert.equal(byId.instances.value, "2");
  assert.equal(byId.instances.trend.direction, "down");
  assert.match(byId.instances.trend.text, /\u22121/);
  assert.equal(byId.instances.trend.sentiment, "bad");

  assert.equal(byId.uptime.value, "1h 2m");
  assert.equal(byId.uptime.trend.direction, "up");
});

test("cards without data or without history", () => {
  const empty = buildCards(null);
  assert.ok(empty.every((c) => c.value === "\u2014" && c.detail === "Waiting for data"));
  const m = metrics({ error_rate: null, uptime_s: null, latency_p50_ms: null, latency_p95_ms: null, latency_p99_ms: null, active_users_upper_bound: true, instances_stale: 1, instances_down: 2 });
  const cards = Object.fromEntries(buildCards(m, {}).map((c) => [c.id, c]));
  assert.equal(cards["error-rate"].value, "\u2014");
  assert.equal(cards["error-rate"].detail, "No reply attempts in the last minute");
  assert.equal(cards.uptime.detail, "No live instance");
  assert.equal(cards.latency.parts[2].value, "\u2014");
  assert.equal(cards["active-users"].value, "\u2264 12");
  assert.equal(cards.instances.detail, "Connected; 1 stale, 2 down");
  assert.equal(cards.answered.trend.direction, "unknown");
  assert.equal(cards.answered.trend.text, "No previous minute to compare yet");
});

test("an uptime that went down is a restart", () => {
  const spec = CARD_SPECS.find((s) => s.id === "uptime");
  const trend = describeTrend(spec, 10, 3600);
  assert.equal(trend.direction, "down");
  assert.equal(trend.text, "Restarted since the previous minute");
});
