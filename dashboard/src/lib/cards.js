/**
 * The metric cards as data: what each card says for one ``metrics`` object
 * (``AggregatedMetrics`` plus ``series``, as ``metrics:update`` and the
 * subscribe snapshot carry it) and how it compares with the previous window.
 *
 * Pure: the DOM layer only copies these strings into place.
 */

import {
  DASH,
  formatChange,
  formatCount,
  formatDuration,
  formatMs,
  formatPercent,
  formatPointChange,
  formatRate,
  isNum,
} from "./format.js";
import { TREND_ARROWS, trendDirection, trendSentiment } from "./trend.js";

/**
 * The cards in page order.  ``key`` is the value compared for the trend,
 * ``polarity`` says whether up is good news, ``tolerance`` what counts as "level".
 */
export const CARD_SPECS = Object.freeze([
  { id: "messages-per-minute", label: "Messages / min", key: "messages_per_minute", polarity: "neutral", tolerance: { relative: 0.05, absolute: 1 } },
  { id: "answered", label: "Answered", key: "answered", polarity: "higher-is-better", tolerance: { relative: 0.05, absolute: 1 } },
  { id: "error-rate", label: "Error rate", key: "error_rate", polarity: "lower-is-better", tolerance: { relative: 0.1, absolute: 0.001 } },
  { id: "latency", label: "Latency", key: "latency_p95_ms", polarity: "lower-is-better", tolerance: { relative: 0.1, absolute: 1 } },
  { id: "active-users", label: "Active users", key: "active_users", polarity: "neutral", tolerance: { relative: 0.05, absolute: 1 } },
  { id: "instances", label: "Bot instances", key: "instances_connected", polarity: "higher-is-better", tolerance: { relative: 0, absolute: 0 } },
  { id: "uptime", label: "Uptime", key: "uptime_s", polarity: "higher-is-better", tolerance: { relative: 0, absolute: 0 } },
]);

/** The values the trend tracker remembers for each update. */
export function trendSample(metrics) {
  const sample = {};
  for (const spec of CARD_SPECS) sample[spec.key] = numberOrNull(metrics?.[spec.key]);
  return sample;
}

/**
 * The previous-window value of every card's trend key.
 *
 * The message rate uses the server's own ``messages_per_minute_previous``
 * when it has one; everything else asks ``tracker`` (a {@link TrendTracker}).
 */
export function previousValues(metrics, tracker, nowMs) {
  const previous = {};
  for (const spec of CARD_SPECS) previous[spec.key] = tracker ? tracker.previous(spec.key, nowMs) : null;
  const serverPrevious = numberOrNull(metrics?.messages_per_minute_previous);
  if (serverPrevious !== null) previous.messages_per_minute = serverPrevious;
  return previous;
}

function numberOrNull(value) {
  return isNum(value) ? value : null;
}

const DIRECTION_WORDS = { up: "Up", down: "Down", flat: "Steady" };

/**
 * The trend line of one card: direction, sentiment and a sentence that
 * carries the meaning without colour or arrows.
 */
export function describeTrend(spec, current, previous) {
  const direction = trendDirection(current, previous, spec.tolerance);
  const sentiment = trendSentiment(direction, spec.polarity);
  if (direction === "unknown") {
    return { direction, sentiment, arrow: "", text: "No previous minute to compare yet" };
  }
  if (spec.key === "uptime_s" && direction === "down") {
    return { direction, sentiment, arrow: TREND_ARROWS.down, text: "Restarted since the previous minute" };
  }
  let change = null;
  if (spec.key === "error_rate") change = formatPointChange(current, previous);
  else if (spec.key === "instances_connected") change = `${current > previous ? "+" : "\u2212"}${Math.abs(current - previous)}`;
  else if (spec.key !== "uptime_s") change = formatChange(current, previous);
  const words = DIRECTION_WORDS[direction];
  const detail = direction !== "flat" && change ? ` ${change}` : "";
  return { direction, sentiment, arrow: TREND_ARROWS[direction], text: `${words}${detail} vs previous minute` };
}

/**
 * Everything the cards show for ``metrics``.
 *
 * @param {object|null} metrics the merged metrics (null before the first snapshot)
 * @param {Record<string, number|null>} previous from {@link previousValues}
 * @returns {{id: string, label: string, value: string, detail: string,
 *            parts?: {label: string, value: string}[], trend: object}[]}
 */
export function buildCards(metrics, previous = {}) {
  return CARD_SPECS.map((spec) => {
    const current = numberOrNull(metrics?.[spec.key]);
    const card = { id: spec.id, label: spec.label, value: DASH, detail: "", trend: describeTrend(spec, current, previous[spec.key] ?? null) };
    if (!metrics) {
      card.detail = "Waiting for data";
      card.trend = { direction: "unknown", sentiment: "neutral", arrow: "", text: "" };
      return card;
    }
    switch (spec.id) {
      case "messages-per-minute":
        card.value = formatCount(metrics.messages_per_minute);
        card.detail = isNum(metrics.messages_per_minute_previous)
          ? `Received in the last 60 s (before: ${formatRate(metrics.messages_per_minute_previous)}/min)`
          : "Received in the last 60 s";
        break;
      case "answered":
        card.value = formatCount(metrics.answered);
        card.detail = `${formatCount(metrics.failed ?? 0)} failed in the last minute`;
        break;
      case "error-rate":
        card.value = formatPercent(metrics.error_rate);
        card.detail = isNum(metrics.error_rate) ? "Failed share of reply attempts, last minute" : "No reply attempts in the last minute";
        break;
      case "latency":
        card.value = formatMs(metrics.latency_p95_ms);
        card.detail = "p95 of the last minute";
        card.parts = [
          { label: "p50", value: formatMs(metrics.latency_p50_ms) },
          { label: "p95", value: formatMs(metrics.latency_p95_ms) },
          { label: "p99", value: formatMs(metrics.latency_p99_ms) },
        ];
        break;
      case "active-users":
        card.value = `${metrics.active_users_upper_bound ? "\u2264 " : ""}${formatCount(metrics.active_users)}`;
        card.detail = metrics.active_users_upper_bound
          ? "Unique users, last minute (upper bound: summed over instances)"
          : "Unique users, last minute";
        break;
      case "instances": {
        card.value = formatCount(metrics.instances_connected);
        const stale = metrics.instances_stale ?? 0;
        const down = metrics.instances_down ?? 0;
        card.detail = stale || down ? `Connected; ${stale} stale, ${down} down` : "Connected and reporting";
        break;
      }
      case "uptime":
        card.value = formatDuration(metrics.uptime_s);
        card.detail = isNum(metrics.uptime_s) ? "Longest-running live instance" : "No live instance";
        break;
      default:
        break;
    }
    return card;
  });
}
