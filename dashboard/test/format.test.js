import assert from "node:assert/strict";
import { test } from "node:test";

process.env.TZ = "UTC";

const {
  DASH,
  formatAgo,
  formatChange,
  formatClock,
  formatCount,
  formatDuration,
  formatMs,
  formatPercent,
  formatPointChange,
  formatRate,
  formatSince,
  isNum,
} = await import("../src/lib/format.js");

test("missing values are a dash, never 0 or NaN", () => {
  for (const fn of [formatCount, formatRate, formatPercent, formatMs, formatDuration]) {
    assert.equal(fn(null), DASH);
    assert.equal(fn(undefined), DASH);
    assert.equal(fn(Number.NaN), DASH);
    assert.equal(fn(Infinity), DASH);
  }
  assert.equal(isNum(0), true);
  assert.equal(isNum("1"), false);
});

test("durations: two largest units", () => {
  assert.equal(formatDuration(0), "0s");
  assert.equal(formatDuration(59.9), "59s");
  assert.equal(formatDuration(60), "1m");
  assert.equal(formatDuration(61), "1m 1s");
  assert.equal(formatDuration(3600), "1h");
  assert.equal(formatDuration(3661), "1h 1m");
  assert.equal(formatDuration(86400), "1d");
  assert.equal(formatDuration(90061), "1d 1h");
  assert.equal(formatDuration(10 * 86400 + 5), "10d");
  assert.equal(formatDuration(-1), DASH);
});

test("percents", () => {
  assert.equal(formatPercent(0), "0%");
  assert.equal(formatPercent(0.0004), "<0.1%");
  assert.equal(formatPercent(0.0123), "1.2%");
  assert.equal(formatPercent(0.05), "5%");
  assert.equal(formatPercent(0.5), "50%");
  assert.equal(formatPercent(1), "100%");
  assert.equal(formatPercent(0.12345, 2), "12.35%");
});

test("milliseconds", () => {
  assert.equal(formatMs(0), "0 ms");
  assert.equal(formatMs(0.4), "<1 ms");
  assert.equal(formatMs(12.6), "13 ms");
  assert.equal(formatMs(999.4), "999 ms");
  assert.equal(formatMs(999.6), "1 s");
  assert.equal(formatMs(1234), "1.23 s");
  assert.equal(formatMs(12345), "12.3 s");
  assert.equal(formatMs(90_000), "1m 30s");
  assert.equal(formatMs(-5), DASH);
});

test("counts and rates", () => {
  assert.equal(formatCount(0), "0");
  assert.equal(formatCount(1234), "1,234");
  assert.equal(formatCount(999_999), "999,999");
  assert.equal(formatCount(2_500_000), "2.5M");
  assert.equal(formatCount(3_000_000_000), "3B");
  assert.equal(formatRate(12), "12");
  assert.equal(formatRate(12.34), "12.3");
  assert.equal(formatRate(0.04), "0");
  assert.equal(formatRate(1234.5), "1,235");
});

test("clock, ago and since", () => {
  const t = Date.UTC(2024, 4, 3, 14, 3, 7) / 1000;
  assert.equal(formatClock(t), "14:03:07");
  assert.equal(formatClock(t, { seconds: false }), "14:03");
  assert.equal(formatAgo(t, t + 2), "just now");
  assert.equal(formatAgo(t, t - 3), "just now", "a little in the future is skew, not an error");
  assert.equal(formatAgo(t, t + 42), "42s ago");
  assert.equal(formatAgo(t, t + 300), "5m ago");
  assert.equal(formatAgo(t, t + 7200), "2h ago");
  assert.equal(formatAgo(t, t + 3 * 86400), "3d ago");
  assert.equal(formatSince(t, t + 300), "since 14:03 (5m ago)");
  assert.equal(formatSince(t, t + 2 * 86400), "since 2024-05-03 14:03 (2d ago)");
});

test("changes", () => {
  assert.equal(formatChange(12, 10), "+20%");
  assert.equal(formatChange(9, 10), "\u221210%");
  assert.equal(formatChange(10.04, 10), "+0.4%");
  assert.equal(formatChange(10, 10), "0%");
  assert.equal(formatChange(5, 0), null);
  assert.equal(formatPointChange(0.05, 0.02), "+3 pp");
  assert.equal(formatPointChange(0.02, 0.05), "\u22123 pp");
  assert.equal(formatPointChange(0.02, null), null);
});
