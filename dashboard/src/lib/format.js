/**
 * Formatting of the numbers the dashboard shows: durations, percents,
 * milliseconds, counts, clock times and "how long ago".
 *
 * Pure functions, no DOM and no clock: every "now" is an argument.  A value
 * that is missing (null, undefined, NaN) is shown as an em dash, never as
 * "0" or "NaN": an empty window is not the same thing as a zero.
 */

/** What a missing value looks like. */
export const DASH = "\u2014";

/** True for a finite number (null, undefined, NaN and Infinity are not). */
export function isNum(value) {
  return typeof value === "number" && Number.isFinite(value);
}

const GROUPED = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/**
 * A whole count with thousands separators; millions and more compacted.
 *   1234 -> "1,234"; 2_500_000 -> "2.5M"; null -> "—"
 */
export function formatCount(value) {
  if (!isNum(value)) return DASH;
  const abs = Math.abs(value);
  if (abs >= 1e9) return `${trimZero((value / 1e9).toFixed(1))}B`;
  if (abs >= 1e6) return `${trimZero((value / 1e6).toFixed(1))}M`;
  return GROUPED.format(Math.round(value));
}

/**
 * A rate that may be fractional (messages per minute): integers as counts,
 * fractions with one decimal below 100.
 *   12 -> "12"; 12.34 -> "12.3"; 0.04 -> "0"; 1234.5 -> "1,235"
 */
export function formatRate(value) {
  if (!isNum(value)) return DASH;
  if (Math.abs(value) >= 100 || Number.isInteger(value)) return formatCount(value);
  return trimZero(value.toFixed(1));
}

/**
 * A ratio (0..1) as a percentage.
 *   0 -> "0%"; 0.0004 -> "<0.1%"; 0.0123 -> "1.2%"; 0.5 -> "50%"; 1 -> "100%"
 */
export function formatPercent(ratio, digits = 1) {
  if (!isNum(ratio)) return DASH;
  const percent = ratio * 100;
  if (percent === 0) return "0%";
  const smallest = 10 ** -digits;
  if (percent > 0 && percent < smallest) return `<${smallest}%`;
  return `${trimZero(percent.toFixed(digits))}%`;
}

/**
 * A latency in milliseconds.
 *   0.4 -> "<1 ms"; 12.6 -> "13 ms"; 1234 -> "1.23 s"; 12345 -> "12.3 s"
 */
export function formatMs(ms) {
  if (!isNum(ms)) return DASH;
  if (ms < 0) return DASH;
  if (ms === 0) return "0 ms";
  if (ms < 1) return "<1 ms";
  if (ms < 999.5) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 9.995) return `${trimZero(seconds.toFixed(2))} s`;
  if (seconds < 59.95) return `${trimZero(seconds.toFixed(1))} s`;
  return formatDuration(seconds);
}

/**
 * A duration in seconds, to the two largest units.
 *   0 -> "0s"; 59.9 -> "59s"; 61 -> "1m 1s"; 3661 -> "1h 1m"; 90061 -> "1d 1h"
 */
export function formatDuration(seconds) {
  if (!isNum(seconds) || seconds < 0) return DASH;
  let rest = Math.floor(seconds);
  const days = Math.floor(rest / 86400);
  rest -= days * 86400;
  const hours = Math.floor(rest / 3600);
  rest -= hours * 3600;
  const minutes = Math.floor(rest / 60);
  const secs = rest - minutes * 60;
  if (days > 0) return hours ? `${days}d ${hours}h` : `${days}d`;
  if (hours > 0) return minutes ? `${hours}h ${minutes}m` : `${hours}h`;
  if (minutes > 0) return secs ? `${minutes}m ${secs}s` : `${minutes}m`;
  return `${secs}s`;
}

/**
 * How long ago something happened, given both times in epoch seconds.
 *   2 s -> "just now"; 42 s -> "42s ago"; 300 s -> "5m ago"; 7200 s -> "2h ago"
 * A time slightly in the future (clock skew) reads as "just now".
 */
export function formatAgo(thenSec, nowSec) {
  if (!isNum(thenSec) || !isNum(nowSec)) return DASH;
  const age = nowSec - thenSec;
  if (age < 5) return "just now";
  if (age < 60) return `${Math.floor(age)}s ago`;
  if (age < 3600) return `${Math.floor(age / 60)}m ago`;
  if (age < 86400) return `${Math.floor(age / 3600)}h ago`;
  return `${Math.floor(age / 86400)}d ago`;
}

function pad2(n) {
  return String(n).padStart(2, "0");
}

/** Local clock time of an epoch-seconds instant: "14:03:07" (or "14:03" without seconds). */
export function formatClock(epochSec, { seconds = true } = {}) {
  if (!isNum(epochSec)) return DASH;
  const d = new Date(epochSec * 1000);
  const hm = `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
  return seconds ? `${hm}:${pad2(d.getSeconds())}` : hm;
}

/** Local date and hour of an epoch-seconds instant: "2024-05-03 14:00". */
export function formatDateHour(epochSec) {
  if (!isNum(epochSec)) return DASH;
  const d = new Date(epochSec * 1000);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

/**
 * "since 14:03 (5m ago)" for a status that began at ``sinceSec``; a status
 * older than a day shows its date.
 */
export function formatSince(sinceSec, nowSec) {
  if (!isNum(sinceSec)) return DASH;
  const when = isNum(nowSec) && nowSec - sinceSec >= 86400
    ? formatDateHour(sinceSec)
    : formatClock(sinceSec, { seconds: false });
  return `since ${when} (${formatAgo(sinceSec, nowSec)})`;
}

/** Signed relative change: (12, 10) -> "+20%"; (9, 10) -> "−10%"; previous 0 -> null. */
export function formatChange(current, previous) {
  if (!isNum(current) || !isNum(previous) || previous === 0) return null;
  const change = ((current - previous) / Math.abs(previous)) * 100;
  const rounded = Math.abs(change) >= 10 ? Math.round(change) : Math.round(change * 10) / 10;
  if (rounded === 0) return "0%";
  return `${rounded > 0 ? "+" : "\u2212"}${Math.abs(rounded)}%`;
}

/** Signed difference in percentage points of two ratios: (0.05, 0.02) -> "+3 pp". */
export function formatPointChange(current, previous) {
  if (!isNum(current) || !isNum(previous)) return null;
  const points = (current - previous) * 100;
  const rounded = Math.abs(points) >= 10 ? Math.round(points) : Math.round(points * 10) / 10;
  if (rounded === 0) return "0 pp";
  return `${rounded > 0 ? "+" : "\u2212"}${Math.abs(rounded)} pp`;
}

function trimZero(text) {
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
}
