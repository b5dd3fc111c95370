/**
 * Trend arrows: is a card's value going up, down or staying level compared
 * with the previous window?
 *
 * The cards describe the last minute (a sliding 1-minute window), so "the
 * previous window" is the minute before it.  The server sends that for the
 * message rate (``messages_per_minute_previous``); for every other card the
 * :class:`TrendTracker` remembers what the same card said about one window
 * ago (a value sampled 60 s earlier describes exactly the minute before the
 * current one).  After a page load or a long gap there is no such sample
 * and the trend is "unknown" until a minute has passed: better no arrow
 * than a wrong one.
 *
 * Pure: time is always an argument (milliseconds).
 */

import { isNum } from "./format.js";

/** @typedef {"up" | "down" | "flat" | "unknown"} TrendDirection */

/**
 * Compare ``current`` with ``previous``.
 *
 * A change within the tolerance reads as "flat": ``relative`` (a fraction of
 * the previous value) or ``absolute`` (in the value's unit), whichever is
 * larger, so small counts do not flicker between up and down.
 *
 * @returns {TrendDirection} "unknown" when either value is missing.
 */
export function trendDirection(current, previous, { relative = 0.05, absolute = 0 } = {}) {
  if (!isNum(current) || !isNum(previous)) return "unknown";
  const threshold = Math.max(absolute, Math.abs(previous) * relative);
  const delta = current - previous;
  if (delta > threshold) return "up";
  if (delta < -threshold) return "down";
  return "flat";
}

/**
 * Whether a direction is good news, bad news or neither.
 *
 * @param {TrendDirection} direction
 * @param {"higher-is-better" | "lower-is-better" | "neutral"} polarity
 * @returns {"good" | "bad" | "neutral"}
 */
export function trendSentiment(direction, polarity) {
  if (direction !== "up" && direction !== "down") return "neutral";
  if (polarity === "higher-is-better") return direction === "up" ? "good" : "bad";
  if (polarity === "lower-is-better") return direction === "down" ? "good" : "bad";
  return "neutral";
}

/** The arrow shown for a direction (decorative; the words carry the meaning). */
export const TREND_ARROWS = Object.freeze({ up: "\u25B2", down: "\u25BC", flat: "\u25AC", unknown: "" });

/**
 * Remembers recent card values to answer "what was this one window ago?".
 *
 * ``record`` keeps at most one sample per ``minSpacingMs``; ``previous`` gives
 * the sample nearest to ``now - windowMs`` if one lies within
 * ``toleranceMs`` of it, else null.  Samples older than ``keepMs`` are dropped,
 * so memory is bounded whatever the update rate.
 */
export class TrendTracker {
  constructor({ windowMs = 60_000, toleranceMs = 15_000, keepMs = 120_000, minSpacingMs = 1_000 } = {}) {
    this.windowMs = windowMs;
    this.toleranceMs = toleranceMs;
    this.keepMs = Math.max(keepMs, windowMs + toleranceMs);
    this.minSpacingMs = minSpacingMs;
    /** @type {{t: number, values: Record<string, number | null>}[]} oldest first */
    this.samples = [];
  }

  /** Remember ``values`` (a key -> number map) as seen at ``nowMs``. */
  record(nowMs, values) {
    const last = this.samples[this.samples.length - 1];
    if (last && nowMs < last.t) {
      // The clock went backwards (system time changed): start over.
      this.samples = [];
    } else if (last && nowMs - last.t < this.minSpacingMs) {
      return;
    }
    this.samples.push({ t: nowMs, values: { ...values } });
    const horizon = nowMs - this.keepMs;
    let drop = 0;
    while (drop < this.samples.length && this.samples[drop].t < horizon) drop += 1;
    if (drop) this.samples.splice(0, drop);
  }

  /** The value of ``key`` about one window before ``nowMs``, or null. */
  previous(key, nowMs) {
    const target = nowMs - this.windowMs;
    let best = null;
    let bestDistance = Infinity;
    for (const sample of this.samples) {
      const distance = Math.abs(sample.t - target);
      if (distance <= this.toleranceMs && distance < bestDistance) {
        const value = sample.values[key];
        if (isNum(value)) {
          best = value;
          bestDistance = distance;
        }
      }
    }
    return best;
  }

  clear() {
    this.samples = [];
  }
}
