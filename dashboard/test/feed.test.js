import assert from "node:assert/strict";
import { test } from "node:test";

import { Conversation, FeedModel, eventKey, isMessageEvent, matchesFilter } from "../src/lib/feed.js";
import { message } from "./fixtures.js";

const ids = (events) => events.map((e) => e.id);

test("the feed is capped: the oldest drop off, newest shown first", () => {
  const feed = new FeedModel({ limit: 3 });
  const events = [1, 2, 3, 4, 5].map((n) => message({ id: `e${n}` }));
  for (const e of events) assert.equal(feed.add(e), true);
  assert.deepEqual(ids(feed.visible()), ["e5", "e4", "e3"]);
  assert.equal(feed.items.length, 3);
  assert.equal(feed.keys.size, 3, "keys of dropped events are forgotten too");
});

test("the same event twice is kept once (replay + snapshot)", () => {
  const feed = new FeedModel({ limit: 10 });
  const e = message({ id: "dup" });
  feed.add(e);
  assert.equal(feed.add({ ...e }), false);
  assert.equal(feed.items.length, 1);
  // Same id, other instance or direction: different events.
  assert.equal(feed.add({ ...e, instance: "bot-2" }), true);
  assert.equal(feed.add({ ...e, direction: "out" }), true);
  assert.notEqual(eventKey(e), eventKey({ ...e, direction: "out" }));
});

test("reset replaces everything (resync) and caps, keeping the newest", () => {
  const feed = new FeedModel({ limit: 2 });
  feed.add(message({ id: "old" }));
  const snapshot = ["a", "b", "c"].map((id) => message({ id }));
  feed.reset([...snapshot, snapshot[2]]);
  assert.deepEqual(ids(feed.visible()), ["c", "b"]);
  assert.equal(feed.add(message({ id: "c" })), false);
});

test("invalid payloads are ignored", () => {
  const feed = new FeedModel();
  assert.equal(feed.add(null), false);
  assert.equal(feed.add({ id: "x" }), false);
  assert.equal(feed.add(message({ direction: "sideways" })), false);
  assert.equal(isMessageEvent(message()), true);
  feed.reset([null, { nope: 1 }, message({ id: "ok" })]);
  assert.deepEqual(ids(feed.items), ["ok"]);
});

test("pause freezes what is shown; resume merges what waited", () => {
  const feed = new FeedModel({ limit: 5 });
  feed.add(message({ id: "a" }));
  feed.pause();
  assert.equal(feed.add(message({ id: "b" })), false, "nothing visible changes while paused");
  feed.add(message({ id: "c" }));
  feed.add(message({ id: "c" }));
  assert.deepEqual(ids(feed.visible()), ["a"]);
  assert.equal(feed.pendingCount, 2);
  feed.resume();
  assert.equal(feed.paused, false);
  assert.deepEqual(ids(feed.visible()), ["c", "b", "a"]);
  assert.equal(feed.pendingCount, 0);
});

test("while paused the waiting buffer is capped and counts what it dropped", () => {
  const feed = new FeedModel({ limit: 3 });
  feed.pause();
  for (let n = 0; n < 10; n += 1) feed.add(message({ id: `p${n}` }));
  assert.equal(feed.pending.length, 3);
  assert.equal(feed.missed, 7);
  assert.equal(feed.pendingCount, 10);
  feed.resume();
  assert.deepEqual(ids(feed.visible()), ["p9", "p8", "p7"]);
});

test("a snapshot that arrives while paused replaces the feed on resume", () => {
  const feed = new FeedModel({ limit: 10 });
  feed.add(message({ id: "stale" }));
  feed.pause();
  feed.reset([message({ id: "s1" }), message({ id: "s2" })]);
  assert.deepEqual(ids(feed.visible()), ["stale"], "still frozen");
  feed.add(message({ id: "live" }));
  feed.resume();
  assert.deepEqual(ids(feed.visible()), ["live", "s2", "s1"]);
});

test("filters by type, direction and outcome", () => {
  const feed = new FeedModel({ limit: 20 });
  const events = [
    message({ id: "t", kind: "text" }),
    message({ id: "q", kind: "quick_reply" }),
    message({ id: "d", kind: "delivery", outcome: "counted" }),
    message({ id: "r", kind: "read", outcome: "counted" }),
    message({ id: "o", kind: "text", direction: "out" }),
    message({ id: "f", kind: "text", direction: "out", outcome: "failed", error_code: 190 }),
    message({ id: "n", kind: "something_new", outcome: "ignored" }),
    message({ id: "h", kind: "handover", outcome: "handoff" }),
  ];
  for (const e of events) feed.add(e);
  feed.setFilter({ type: "text" });
  assert.deepEqual(ids(feed.visible()), ["f", "o", "t"]);
  feed.setFilter({ type: "receipts" });
  assert.deepEqual(ids(feed.visible()), ["r", "d"]);
  feed.setFilter({ type: "other" });
  assert.deepEqual(ids(feed.visible()), ["h", "n"], "unknown kinds land in Other");
  feed.setFilter({ direction: "out" });
  assert.deepEqual(ids(feed.visible()), ["f", "o"]);
  feed.setFilter({ outcome: "failed" });
  assert.deepEqual(ids(feed.visible()), ["f"]);
  feed.setFilter({ outcome: "other" });
  assert.deepEqual(ids(feed.visible()), ["h", "n", "r", "d"]);
  feed.setFilter({ type: "text", direction: "out", outcome: "answered" });
  assert.deepEqual(ids(feed.visible()), ["o"]);
  feed.setFilter({});
  assert.equal(feed.visible().length, events.length);
  assert.equal(matchesFilter(events[0], { type: "no-such-type" }), true, "an unknown filter value filters nothing");
});

test("a conversation keeps one user's messages, oldest first, history merged with live", () => {
  const c = new Conversation("u_aaaaaaaaaa");
  assert.equal(c.add(message({ id: "other", user: "u_bbbbbbbbbb" })), false);
  const live = message({ id: "live", user: "u_aaaaaaaaaa", at: 200 });
  assert.equal(c.add(live), true);
  c.reset([message({ id: "h1", user: "u_aaaaaaaaaa", at: 100 }), message({ id: "h2", user: "u_aaaaaaaaaa", at: 150 }), { ...live }]);
  assert.deepEqual(ids(c.items), ["h1", "h2", "live"]);
  assert.equal(c.add({ ...live }), false);
});

test("the limit must be positive", () => {
  assert.throws(() => new FeedModel({ limit: 0 }), RangeError);
});
