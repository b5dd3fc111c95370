/**
 * The live message feed: rows keyed by event (reused, not rebuilt, so a
 * busy feed costs little), controls for pause and filters, and a click on a
 * user that opens the conversation.
 */

import { FEED_DIRECTIONS, FEED_OUTCOMES, FEED_TYPES, eventKey } from "../lib/feed.js";
import { DASH, formatClock, formatMs } from "../lib/format.js";
import { h, reconcileChildren, setAttr, setText } from "./dom.js";

const KIND_LABELS = {
  text: "text",
  quick_reply: "quick reply",
  attachment: "attachment",
  postback: "postback",
  echo: "echo",
  delivery: "delivery",
  read: "read",
  optin: "opt-in",
  referral: "referral",
  handover: "handover",
  standby: "standby",
  unknown: "unknown",
};

/** One message as a list item (feed and conversation share it). */
export function messageRow(event, { onUser = null, testid = "feed-row" } = {}) {
  const incoming = event.direction === "in";
  const outcome = event.outcome + (event.error_code !== null && event.error_code !== undefined ? ` (${event.error_code})` : "");
  const user = onUser
    ? h("button", {
        type: "button",
        class: "link user",
        "data-testid": "feed-user",
        "data-user": event.user,
        "aria-label": `Open conversation with ${event.user}`,
        text: event.user,
        onclick: () => onUser(event.user),
      })
    : h("span", { class: "user", text: event.user });
  return h(
    "li",
    {
      class: `message direction-${event.direction} outcome-${event.outcome}`,
      "data-testid": testid,
      "data-direction": event.direction,
      "data-kind": event.kind,
      "data-outcome": event.outcome,
      "data-user": event.user,
    },
    h("time", { class: "message-time", datetime: new Date(event.at * 1000).toISOString(), text: formatClock(event.at) }),
    h(
      "span",
      { class: "message-direction" },
      h("span", { "aria-hidden": "true", text: incoming ? "\u2193 " : "\u2191 " }),
      incoming ? "In" : "Out",
    ),
    user,
    h("span", { class: "message-kind", text: KIND_LABELS[event.kind] ?? event.kind }),
    h("span", { class: "message-preview", title: event.preview || "", text: event.preview || DASH }),
    h("span", { class: "message-latency", text: event.latency_ms === null || event.latency_ms === undefined ? DASH : formatMs(event.latency_ms) }),
    h("span", { class: `message-outcome badge outcome-${event.outcome}`, text: outcome }),
  );
}

function fillSelect(select, options) {
  select.replaceChildren(...options.map((o) => h("option", { value: o.value, text: o.label })));
}

export function createFeedView({ list, empty, status, pauseButton, typeSelect, directionSelect, outcomeSelect, model, onUser, onChange }) {
  fillSelect(typeSelect, FEED_TYPES);
  fillSelect(directionSelect, FEED_DIRECTIONS);
  fillSelect(outcomeSelect, FEED_OUTCOMES);

  /** Rendered rows by event key. */
  let rows = new Map();
  let renderedVersion = -1;

  function filterChanged() {
    model.setFilter({ type: typeSelect.value, direction: directionSelect.value, outcome: outcomeSelect.value });
    onChange();
  }
  typeSelect.addEventListener("change", filterChanged);
  directionSelect.addEventListener("change", filterChanged);
  outcomeSelect.addEventListener("change", filterChanged);

  pauseButton.addEventListener("click", () => {
    if (model.paused) model.resume();
    else model.pause();
    onChange();
  });

  function render() {
    if (model.version === renderedVersion) return;
    renderedVersion = model.version;
    const shown = model.visible();
    const next = new Map();
    const elements = [];
    for (const event of shown) {
      const key = eventKey(event);
      const el = rows.get(key) ?? messageRow(event, { onUser });
      next.set(key, el);
      elements.push(el);
    }
    rows = next;
    reconcileChildren(list, elements);
    empty.hidden = shown.length > 0;
    setText(empty, model.items.length ? "No messages match the filters." : "No messages yet.");

    setAttr(pauseButton, "aria-pressed", model.paused ? "true" : "false");
    setText(pauseButton, model.paused ? "Resume" : "Pause");
    if (model.paused) {
      const waiting = model.pendingCount;
      setText(status, waiting ? `Paused \u2014 ${waiting} new message${waiting === 1 ? "" : "s"} waiting` : "Paused");
    } else {
      setText(status, "");
    }
  }

  return { render };
}
