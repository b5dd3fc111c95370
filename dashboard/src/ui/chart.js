/**
 * The activity chart (uPlot) with its text summary and data table.
 *
 * The canvas is hidden from assistive technology; the summary sentence and
 * the (on demand) table say the same thing in text.  Data is only handed to
 * uPlot when it changed, and at most once per animation frame, so one
 * ``metrics:update`` a second costs one redraw.
 */

import uPlot from "uplot";
import { formatClock, formatCount, formatDateHour } from "../lib/format.js";
import { summarize, toColumns } from "../lib/series.js";
import { h, setText } from "./dom.js";

const COLORS = { received: "#0969da", answered: "#1a7f37", failed: "#cf222e", axis: "#57606a", grid: "#d8dee4" };
const HEIGHT = 220;

const RANGE_WORDS = { "60m": "Last 60 minutes", "24h": "Last 24 hours", "7d": "Last 7 days" };

export function createChart({ container, summaryEl, tableBody, details }) {
  let plot = null;
  let current = { buckets: [], range: "60m" };
  let pending = false;

  function width() {
    return Math.max(200, Math.floor(container.clientWidth || container.getBoundingClientRect().width || 320));
  }

  /** Axis labels in 24-hour local time; whole days as month-day. */
  function tickLabels(_u, splits, _axis, _space, increment) {
    return splits.map((t) => {
      const d = new Date(t * 1000);
      const day = `${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
      if (increment >= 86400) return day;
      const time = formatClock(t, { seconds: false });
      return increment >= 3600 && d.getHours() === 0 && d.getMinutes() === 0 ? day : time;
    });
  }

  function make(columns) {
    plot = new uPlot(
      {
        width: width(),
        height: HEIGHT,
        scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(5, Math.ceil(max * 1.1))] } },
        series: [
          { label: "Time", value: (_u, t) => (t === null || t === undefined ? "--" : label(t)) },
          { label: "Received", stroke: COLORS.received, width: 2, fill: "rgba(9,105,218,0.08)", points: { show: false } },
          { label: "Answered", stroke: COLORS.answered, width: 2, points: { show: false } },
          { label: "Failed", stroke: COLORS.failed, width: 2, points: { show: false } },
        ],
        axes: [
          { stroke: COLORS.axis, grid: { stroke: COLORS.grid, width: 1 }, ticks: { stroke: COLORS.grid }, values: tickLabels },
          { stroke: COLORS.axis, grid: { stroke: COLORS.grid, width: 1 }, ticks: { stroke: COLORS.grid }, size: 48 },
        ],
        cursor: { drag: { x: false, y: false } },
        legend: { live: true },
      },
      columns,
      container,
    );
  }

  function draw() {
    pending = false;
    const columns = toColumns(current.buckets);
    if (!plot) make(columns);
    else plot.setData(columns);
    renderSummary();
    if (details.open) renderTable();
  }

  function label(time) {
    return current.range === "60m" ? formatClock(time, { seconds: false }) : formatDateHour(time);
  }

  function renderSummary() {
    const s = summarize(current.buckets);
    if (!current.buckets.length) {
      setText(summaryEl, "No activity data yet.");
      return;
    }
    const peak = s.peak ? ` Busiest: ${label(s.peak.time)} with ${formatCount(s.peak.received)} received.` : " No messages received.";
    setText(
      summaryEl,
      `${RANGE_WORDS[current.range]}: ${formatCount(s.received)} received, ${formatCount(s.answered)} answered, ${formatCount(s.failed)} failed.${peak}`,
    );
  }

  function renderTable() {
    const rows = [...current.buckets].reverse().map((b) =>
      h("tr", {}, h("th", { scope: "row", text: label(b.time) }), h("td", { text: formatCount(b.received) }), h("td", { text: formatCount(b.answered) }), h("td", { text: formatCount(b.failed) })),
    );
    tableBody.replaceChildren(...rows);
  }

  details.addEventListener("toggle", () => {
    if (details.open) renderTable();
  });

  if (typeof ResizeObserver === "function") {
    new ResizeObserver(() => {
      if (plot) plot.setSize({ width: width(), height: HEIGHT });
    }).observe(container);
  }

  return {
    /** Show ``buckets`` ({time, received, answered, failed}, oldest first) for ``range``. */
    show(buckets, range) {
      current = { buckets, range };
      if (!pending) {
        pending = true;
        requestAnimationFrame(draw);
      }
    },
  };
}
