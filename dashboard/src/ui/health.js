/**
 * Service health rows: one ``li[data-testid=health-row]`` per component, with
 * ``data-component`` and ``data-status``; status in words (not colour only),
 * the reason when not healthy, and since when.
 */

import { STATUS_LABELS } from "../lib/health.js";
import { formatCount, formatDuration, formatSince } from "../lib/format.js";
import { h, setAttr, setText } from "./dom.js";

export function createHealthView({ groupsEl, summaryEl, detailsEl }) {
  let renderedVersion = -1;

  function row(entry, nowSec) {
    const reason = entry.status !== "healthy" && entry.reason ? entry.reason : null;
    return h(
      "li",
      {
        class: `health-row status-${entry.status}`,
        "data-testid": "health-row",
        "data-component": entry.component,
        "data-status": entry.status,
      },
      h("span", { class: "health-icon", "aria-hidden": "true" }),
      h("span", { class: "health-name", text: entry.label }),
      h("span", { class: "health-status", text: STATUS_LABELS[entry.status] ?? entry.status }),
      reason ? h("span", { class: "health-reason", text: reason }) : null,
      h("span", { class: "health-since", "data-since": entry.since ?? "", text: entry.since ? formatSince(entry.since, nowSec) : "" }),
    );
  }

  /** Rebuild the rows when the model changed; otherwise only refresh the "since" times. */
  function render(model, nowSec) {
    if (model.version !== renderedVersion) {
      renderedVersion = model.version;
      const groups = model.groups();
      groupsEl.replaceChildren(
        ...groups.map((group) =>
          h(
            "div",
            { class: "health-group", "data-group": group.id },
            h("h3", { class: "health-group-title", id: `health-group-${group.id}`, text: group.label }),
            h("ul", { class: "health-list", "aria-labelledby": `health-group-${group.id}` }, group.rows.map((r) => row(r, nowSec))),
          ),
        ),
      );
      if (!groups.length) groupsEl.replaceChildren(h("p", { class: "empty", text: "No components reported yet." }));
      const summary = model.summary();
      setText(summaryEl, summary.text);
      setAttr(summaryEl, "data-status", summary.worst);
    } else {
      for (const since of groupsEl.querySelectorAll(".health-since[data-since]")) {
        const value = Number(since.dataset.since);
        if (value) setText(since, formatSince(value, nowSec));
      }
    }
  }

  /** The extra lines from ``health-comprehensive`` (admin instance, sockets, store). */
  function renderDetails(details) {
    if (!details) {
      setText(detailsEl, "");
      return;
    }
    const parts = [];
    if (details.admin?.instance) {
      const uptime = details.admin.uptime_s ?? details.admin.uptime;
      parts.push(`Admin API ${details.admin.instance}${typeof uptime === "number" ? `, up ${formatDuration(uptime)}` : ""}`);
    }
    if (typeof details.sockets?.connected === "number") parts.push(`${formatCount(details.sockets.connected)} sockets connected`);
    if (details.store?.backend) parts.push(`store: ${details.store.backend}`);
    setText(detailsEl, parts.join(" \u00B7 "));
  }

  return { render, renderDetails };
}
