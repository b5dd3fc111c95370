import assert from "node:assert/strict";
import { test } from "node:test";

import { ActivityWindow, fillBuckets, hourlyWindow, hourOf, minuteOf, summarize, toColumns } from "../src/lib/series.js";
import { T0, series } from "./fixtures.js";

test("minute and hour alignment", () => {
  assert.equal(minuteOf(T0 + 59.9), T0);
  assert.equal(minuteOf(T0 + 60), T0 + 60);
  assert.equal(hourOf(T0 + 3599), T0);
});

test("fillBuckets zero-fills gaps and ignores what is outside", () => {
  const rows = [
    { minute: T0 - 60, received: 9 }, // before the window
    { minute: T0 + 60, received: 2, answered: 1, failed: 1 },
    { minute: T0 + 185, received: 4 }, // not aligned: belongs to T0 + 180
    { minute: T0 + 600, received: 5 }, // after the window
    { minute: "x", received: 1 },
    null,
  ];
  const buckets = fillBuckets(rows, { end: T0 + 240, length: 5, step: 60 });
  assert.deepEqual(
    buckets.map((b) => [b.time - T0, b.received, b.answered, b.failed]),
    [
      [0, 0, 0, 0],
      [60, 2, 1, 1],
      [120, 0, 0, 0],
      [180, 4, 0, 0],
      [240, 0, 0, 0],
    ],
  );
});

test("fillBuckets treats negative or bogus counts as zero", () => {
  const [b] = fillBuckets([{ minute: T0, received: -3, answered: "7", failed: Number.NaN }], { end: T0, length: 1, step: 60 });
  assert.deepEqual([b.received, b.answered, b.failed], [0, 0, 0]);
});

test("the window takes the server's series whole: 60 minutes, oldest first", () => {
  const w = new ActivityWindow();
  const incoming = series(T0 + 3599, (i) => ({ received: i + 1, answered: i, failed: 0 }));
  w.replace(incoming, T0 + 3599);
  assert.equal(w.buckets.length, 60);
  assert.equal(w.buckets[0].time, T0);
  assert.equal(w.buckets[59].time, T0 + 59 * 60);
  assert.equal(w.buckets[59].received, 60);
  assert.equal(w.end, T0 + 59 * 60);
});

test("a short or gappy series is zero-filled to 60 minutes", () => {
  const w = new ActivityWindow();
  w.replace([{ minute: T0 + 59 * 60, received: 5, answered: 5, failed: 0 }, { minute: T0 + 10 * 60, received: 1, answered: 0, failed: 1 }], T0 + 59 * 60 + 5);
  assert.equal(w.buckets.length, 60);
  assert.equal(w.buckets[59].received, 5);
  assert.equal(w.buckets[10].failed, 1);
  assert.equal(w.buckets.filter((b) => b.received).length, 2);
});

test("live updates move the window forward and grow the current minute", () => {
  const w = new ActivityWindow();
  const end = T0 + 59 * 60;
  w.replace(series(end, () => ({ received: 1, answered: 1, failed: 0 })), end + 10);
  const v1 = w.version;
  // Same minute, the current bucket grew.
  const grown = series(end, (i) => ({ received: i === 59 ? 7 : 1, answered: 1, failed: 0 }));
  w.replace(grown, end + 20);
  assert.equal(w.buckets[59].received, 7);
  assert.ok(w.version > v1);
  // Identical data: no new version (no redraw).
  const v2 = w.version;
  w.replace(grown, end + 21);
  assert.equal(w.version, v2);
  // Next minute: the oldest falls off, the newest appears.
  w.replace(series(end + 60, (i) => ({ received: i === 59 ? 3 : 1, answered: 1, failed: 0 })), end + 65);
  assert.equal(w.buckets[0].time, T0 + 60);
  assert.equal(w.buckets[59].time, end + 60);
  assert.equal(w.buckets[59].received, 3);
});

test("without updates the local clock rolls the window forward with zeros", () => {
  const w = new ActivityWindow();
  const end = T0 + 59 * 60;
  w.replace(series(end, () => ({ received: 2, answered: 2, failed: 0 })), end + 30);
  assert.equal(w.advance(end + 59), false, "same minute: nothing to do");
  assert.equal(w.advance(end + 60 * 3 + 1), true);
  assert.equal(w.end, end + 180);
  assert.equal(w.buckets.length, 60);
  assert.deepEqual(w.buckets.slice(-3).map((b) => b.received), [0, 0, 0]);
  assert.equal(w.buckets[56].received, 2, "known minutes keep their counts");
  assert.equal(w.advance(end), false, "never backwards");
});

test("a local clock that runs ahead does not push empty minutes in front of live ones", () => {
  const w = new ActivityWindow();
  const end = T0 + 59 * 60;
  // The browser is 2 minutes ahead of the server.
  w.replace(series(end, () => ({ received: 1, answered: 1, failed: 0 })), end + 120 + 5);
  assert.equal(w.skewMinutes, 2);
  assert.equal(w.advance(end + 120 + 30), false);
  assert.equal(w.end, end);
  // Once the (corrected) clock passes the next minute, it moves.
  assert.equal(w.advance(end + 180 + 1), true);
  assert.equal(w.end, end + 60);
});

test("an empty series keeps the window where it is, zeroed", () => {
  const w = new ActivityWindow();
  w.replace(series(T0 + 3599, () => ({ received: 1, answered: 0, failed: 0 })), T0 + 3599);
  w.replace([], T0 + 3599);
  assert.equal(w.buckets.length, 60);
  assert.equal(w.end, T0 + 59 * 60);
  assert.ok(w.buckets.every((b) => b.received === 0));
});

test("hourly history: summed per hour (one row per instance), zero-filled", () => {
  const now = T0 + 23 * 3600 + 120;
  const rows = [
    { hour_epoch: T0, received: 10, answered: 9, failed: 1 },
    { hour_epoch: T0, received: 5, answered: 5, failed: 0, instance: "bot-2" },
    { hour_epoch: T0 + 23 * 3600, received: 7, answered: 7, failed: 0 },
    { hour_epoch: T0 - 3600, received: 99, answered: 0, failed: 0 },
  ];
  const buckets = hourlyWindow(rows, 24, now);
  assert.equal(buckets.length, 24);
  assert.equal(buckets[0].time, T0);
  assert.deepEqual([buckets[0].received, buckets[0].answered, buckets[0].failed], [15, 14, 1]);
  assert.equal(buckets[23].received, 7);
  assert.equal(buckets.slice(1, 23).every((b) => b.received === 0), true);
  assert.equal(hourlyWindow([], 168, now).length, 168);
});

test("columns for uPlot and the text summary", () => {
  const buckets = fillBuckets([{ minute: T0 + 60, received: 4, answered: 3, failed: 1 }, { minute: T0 + 120, received: 9, answered: 9, failed: 0 }], { end: T0 + 120, length: 3, step: 60 });
  assert.deepEqual(toColumns(buckets), [
    [T0, T0 + 60, T0 + 120],
    [0, 4, 9],
    [0, 3, 9],
    [0, 1, 0],
  ]);
  const s = summarize(buckets);
  assert.deepEqual([s.received, s.answered, s.failed, s.buckets], [13, 12, 1, 3]);
  assert.equal(s.peak.time, T0 + 120);
  assert.equal(summarize(fillBuckets([], { end: T0, length: 2, step: 60 })).peak, null);
});
