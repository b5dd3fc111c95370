import assert from "node:assert/strict";
import { test } from "node:test";

import { ConnectionMachine, countdownSeconds, describeConnection } from "../src/lib/connection.js";

function live(machine, t = 0) {
  machine.start(t);
  machine.connected(t + 10);
  machine.synced(t + 20);
  return machine;
}

test("connecting -> syncing -> live: live only after the snapshot", () => {
  const m = new ConnectionMachine(0);
  assert.equal(m.state.kind, "idle");
  m.start(0);
  assert.equal(m.state.kind, "connecting");
  m.connected(10, { recovered: false });
  assert.equal(m.state.kind, "syncing");
  assert.equal(m.isLive, false);
  assert.equal(describeConnection(m.state, 10).label, "Synchronising");
  m.synced(20);
  assert.equal(m.state.kind, "live");
  assert.equal(m.isLive, true);
  assert.equal(m.state.since, 20);
  assert.equal(describeConnection(m.state, 30).label, "Live");
});

test("synced is ignored unless syncing", () => {
  const m = new ConnectionMachine(0);
  m.start(0);
  m.synced(5);
  assert.equal(m.state.kind, "connecting");
});

test("a lost connection counts down to socket.io's next attempt", () => {
  const m = live(new ConnectionMachine(0));
  m.disconnected(1000, "transport close");
  assert.equal(m.state.kind, "reconnecting");
  assert.equal(m.state.retryAt, null);
  assert.equal(describeConnection(m.state, 1000).detail, "connection lost");

  // socket.io's manager schedules attempt 1 in 1.3 s (backoff with jitter).
  m.retryScheduled(1000, { attempt: 1, delayMs: 1300 });
  assert.equal(m.state.attempt, 1);
  assert.equal(countdownSeconds(m.state, 1000), 2);
  assert.equal(countdownSeconds(m.state, 1400), 1);
  assert.equal(countdownSeconds(m.state, 2300), 0);
  assert.deepEqual(describeConnection(m.state, 1400), { label: "Reconnecting", detail: "retry in 1 s (attempt 1)", tone: "pending", countdown: 1 });

  m.retrying(2300, 1);
  assert.equal(m.state.retryAt, null);
  assert.equal(describeConnection(m.state, 2300).detail, "trying now (attempt 1)");

  m.connectFailed(2400, { message: "websocket error" });
  assert.equal(m.state.kind, "reconnecting");
  assert.equal(m.state.error, "websocket error");
  m.retryScheduled(2400, { attempt: 2, delayMs: 2000 });
  assert.equal(countdownSeconds(m.state, 2400), 2);
  assert.equal(m.state.since, 1000, "still the same outage");

  m.retrying(4400, 2);
  m.connected(4500, { recovered: true });
  assert.equal(m.state.kind, "syncing", "reconnected but not live until resynchronised");
  assert.equal(m.state.recovered, true);
  m.synced(4600);
  assert.equal(m.state.kind, "live");
});

test("a scheduled retry does not turn a live page into reconnecting", () => {
  const m = live(new ConnectionMachine(0));
  m.retryScheduled(100, { attempt: 1, delayMs: 1000 });
  m.retrying(100, 1);
  assert.equal(m.state.kind, "live");
});

test("a failed first connection is reconnecting, not offline", () => {
  const m = new ConnectionMachine(0);
  m.start(0);
  m.connectFailed(50, { message: "xhr poll error" });
  assert.equal(m.state.kind, "reconnecting");
  m.retryScheduled(50, { attempt: 1, delayMs: 1000 });
  assert.equal(countdownSeconds(m.state, 50), 1);
});

test("offline: the browser lost its network, and came back", () => {
  const m = live(new ConnectionMachine(0));
  m.browserWentOffline(100);
  assert.equal(m.state.kind, "offline");
  assert.equal(m.state.reason, "network");
  m.disconnected(150, "transport close");
  assert.equal(m.state.kind, "offline", "a disconnect while offline stays offline");
  m.retryScheduled(160, { attempt: 1, delayMs: 5000 });
  assert.equal(m.state.kind, "offline");
  assert.equal(m.state.retryAt, 5160);
  assert.equal(describeConnection(m.state, 200).label, "Offline");
  assert.equal(describeConnection(m.state, 200).detail, "no network");
  m.browserWentOnline(300);
  assert.equal(m.state.kind, "reconnecting");
  assert.equal(countdownSeconds(m.state, 300), 5);
});

test("offline: socket.io gave up; a manual retry goes back to reconnecting", () => {
  const m = live(new ConnectionMachine(0));
  m.disconnected(100, "transport close");
  m.gaveUp(500);
  assert.equal(m.state.kind, "offline");
  assert.equal(m.state.reason, "gave-up");
  m.manualRetry(600);
  assert.equal(m.state.kind, "reconnecting");
  assert.equal(m.state.attempt, 0);
});

test("offline: the server refused the session (final)", () => {
  const m = live(new ConnectionMachine(0));
  m.disconnected(100, "transport close");
  m.connectFailed(200, { message: "expired", auth: true });
  assert.equal(m.state.kind, "offline");
  assert.equal(m.state.reason, "auth");
  m.manualRetry(300);
  assert.equal(m.state.kind, "offline", "no retry with a rejected token");
  m.browserWentOffline(400);
  assert.equal(m.state.reason, "auth", "the browser's network does not override a rejected session");
});

test("stop goes idle and idle ignores socket events", () => {
  const m = live(new ConnectionMachine(0));
  m.stop(100);
  assert.equal(m.state.kind, "idle");
  m.disconnected(110, "io client disconnect");
  m.retryScheduled(120, { attempt: 1, delayMs: 10 });
  m.connected(130);
  m.connectFailed(140, { message: "x" });
  m.gaveUp(150);
  assert.equal(m.state.kind, "idle");
});

test("listeners see every change once, with the previous state", () => {
  const m = new ConnectionMachine(0);
  const seen = [];
  const off = m.subscribe((next, previous) => seen.push(`${previous.kind}->${next.kind}`));
  live(m);
  m.synced(30); // ignored: no change, no call
  m.disconnected(40, "ping timeout");
  off();
  m.retryScheduled(50, { attempt: 1, delayMs: 1 });
  assert.deepEqual(seen, ["idle->connecting", "connecting->syncing", "syncing->live", "live->reconnecting"]);
});

test("states are frozen values", () => {
  const m = new ConnectionMachine(0);
  assert.throws(() => {
    "use strict";
    m.state.kind = "live";
  }, TypeError);
});
