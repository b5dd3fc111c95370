/**
 * The activity chart's data: the last 60 minutes per minute (live) and the
 * last 24 hours or 7 days per hour (from the history endpoint).
 *
 * Theory of operation
 * -------------------
 * Every ``metrics:update`` (and the subscribe snapshot) carries ``series``:
 * 60 ``{minute, received, answered, failed}`` buckets, oldest first, ending
 * at the server's current minute.  That series is the truth for the
 * minutes it covers, so :meth:`ActivityWindow.replace` takes it whole (a
 * minute's counts grow while it is current; an older copy never wins over
 * a newer one because updates arrive in order on one socket).
 *
 * Between updates the window still has to move: with no bot reporting
 * nothing is sent, and a chart frozen at 14:02 would look live at 14:30.
 * :meth:`ActivityWindow.advance` rolls the window forward with zero minutes
 * when the local clock passes a minute boundary.  The browser's clock may
 * disagree with the server's; the skew (how many whole minutes the local
 * clock was ahead at the last update) is remembered so that a fast local
 * clock does not push empty minutes in front of live ones.
 *
 * Gaps (minutes nobody reported, or a short/malformed series) are zeros,
 * and the window always has exactly ``length`` minutes, oldest first.
 *
 * Pure: times are epoch seconds, passed in.
 */

import { isNum } from "./format.js";

export const MINUTE = 60;
export const HOUR = 3600;
export const WINDOW_MINUTES = 60;
export const RANGES = Object.freeze({ "60m": { hours: null }, "24h": { hours: 24 }, "7d": { hours: 168 } });

/** Epoch seconds at the start of the minute containing ``epochSec``. */
export function minuteOf(epochSec) {
  return Math.floor(epochSec / MINUTE) * MINUTE;
}

/** Epoch seconds at the start of the hour containing ``epochSec``. */
export function hourOf(epochSec) {
  return Math.floor(epochSec / HOUR) * HOUR;
}

function count(value) {
  return isNum(value) && value > 0 ? value : 0;
}

/**
 * ``length`` buckets of ``step`` seconds ending at the bucket ``end``, oldest
 * first, from ``rows`` (each with a time under ``timeKey``).  Missing buckets
 * are zeros; rows outside the window are ignored; rows for the same bucket
 * are summed when ``sum`` (several instances' rows for one hour), otherwise
 * the last one wins.
 */
export function fillBuckets(rows, { end, length, step, timeKey = "minute", sum = false }) {
  const start = end - (length - 1) * step;
  const buckets = [];
  for (let i = 0; i < length; i += 1) {
    buckets.push({ time: start + i * step, received: 0, answered: 0, failed: 0 });
  }
  for (const row of rows ?? []) {
    const time = row?.[timeKey];
    if (!isNum(time)) continue;
    const aligned = Math.floor(time / step) * step;
    if (aligned < start || aligned > end) continue;
    const bucket = buckets[(aligned - start) / step];
    if (sum) {
      bucket.received += count(row.received);
      bucket.answered += count(row.answered);
      bucket.failed += count(row.failed);
    } else {
      bucket.received = count(row.received);
      bucket.answered = count(row.answered);
      bucket.failed = count(row.failed);
    }
  }
  return buckets;
}

/** The newest bucket time in ``rows`` (aligned to ``step``), or null. */
function newestTime(rows, timeKey, step) {
  let newest = null;
  for (const row of rows ?? []) {
    const time = row?.[timeKey];
    if (isNum(time) && (newest === null || time > newest)) newest = time;
  }
  return newest === null ? null : Math.floor(newest / step) * step;
}

/**
 * The live 60-minute window.
 *
 * ``replace(series, nowSec)`` takes a server series; ``advance(nowSec)``
 * rolls it forward by the local clock; ``buckets`` is always
 * ``length`` long, oldest first; ``version`` changes whenever the data does
 * (so the chart redraws only when needed).
 */
export class ActivityWindow {
  constructor({ length = WINDOW_MINUTES } = {}) {
    this.length = length;
    this.buckets = [];
    /** Minute of the newest bucket, or null before any data. */
    this.end = null;
    /** Whole minutes the local clock ran ahead of the server at the last update. */
    this.skewMinutes = 0;
    this.version = 0;
  }

  /**
   * Take the server's series as the truth.  ``nowSec`` is the local clock
   * when it arrived.  An empty series keeps the window's position but
   * zeroes it.
   */
  replace(series, nowSec) {
    const newest = newestTime(series, "minute", MINUTE);
    const end = newest ?? this.end ?? (isNum(nowSec) ? minuteOf(nowSec) : null);
    if (end === null) return;
    const next = fillBuckets(series, { end, length: this.length, step: MINUTE });
    if (newest !== null && isNum(nowSec)) {
      this.skewMinutes = Math.max(0, (minuteOf(nowSec) - newest) / MINUTE);
    }
    this.end = end;
    this._set(next);
  }

  /**
   * Roll the window forward to the local minute (corrected by the skew)
   * with zero buckets; returns true when it moved.  Never moves backwards.
   */
  advance(nowSec) {
    if (this.end === null || !isNum(nowSec)) return false;
    const target = minuteOf(nowSec) - this.skewMinutes * MINUTE;
    if (target <= this.end) return false;
    const rows = this.buckets.map((b) => ({ minute: b.time, received: b.received, answered: b.answered, failed: b.failed }));
    this.end = target;
    this._set(fillBuckets(rows, { end: target, length: this.length, step: MINUTE }));
    return true;
  }

  /** Forget everything (logout). */
  clear() {
    this.buckets = [];
    this.end = null;
    this.skewMinutes = 0;
    this.version += 1;
  }

  _set(buckets) {
    if (!sameBuckets(this.buckets, buckets)) {
      this.buckets = buckets;
      this.version += 1;
    }
  }
}

function sameBuckets(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i += 1) {
    const x = a[i];
    const y = b[i];
    if (x.time !== y.time || x.received !== y.received || x.answered !== y.answered || x.failed !== y.failed) {
      return false;
    }
  }
  return true;
}

/**
 * The hourly window for a history response ``{range, hours: [{hour_epoch, ...}]}``:
 * ``hours`` buckets ending at the hour containing ``nowSec``, rows of the same
 * hour (one per bot instance) summed, missing hours zero.
 */
export function hourlyWindow(rows, hours, nowSec) {
  return fillBuckets(rows, { end: hourOf(nowSec), length: hours, step: HOUR, timeKey: "hour_epoch", sum: true });
}

/** Buckets as uPlot's columns: ``[times, received, answered, failed]``. */
export function toColumns(buckets) {
  const times = [];
  const received = [];
  const answered = [];
  const failed = [];
  for (const b of buckets) {
    times.push(b.time);
    received.push(b.received);
    answered.push(b.answered);
    failed.push(b.failed);
  }
  return [times, received, answered, failed];
}

/**
 * Totals and the busiest bucket, for the chart's text summary (what a
 * screen reader gets instead of the canvas).
 */
export function summarize(buckets) {
  const totals = { received: 0, answered: 0, failed: 0 };
  let peak = null;
  for (const b of buckets) {
    totals.received += b.received;
    totals.answered += b.answered;
    totals.failed += b.failed;
    if (b.received > 0 && (peak === null || b.received > peak.received)) peak = b;
  }
  return { ...totals, peak, buckets: buckets.length };
}
