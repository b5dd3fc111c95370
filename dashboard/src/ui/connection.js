/**
 * The connection indicator.  Its label (the live region's text) changes
 * only when the state does; the countdown ticks in a part hidden from
 * screen readers, so they hear "Reconnecting" once, not every second.
 * ``data-state`` carries the machine's state for styling and tests.
 */

import { describeConnection } from "../lib/connection.js";
import { byId, setAttr, setText } from "./dom.js";

export function createConnectionView({ onRetry }) {
  const root = byId("connection-status");
  const label = root.querySelector(".connection-label");
  const detail = root.querySelector(".connection-detail");
  const retry = byId("connection-retry");
  retry.addEventListener("click", () => onRetry());

  return {
    render(state, nowMs) {
      const view = describeConnection(state, nowMs);
      setAttr(root, "data-state", state.kind);
      setAttr(root, "data-tone", view.tone);
      // Reasons are worth hearing; a ticking countdown is not.
      const spoken = view.tone === "offline" && view.detail ? `${view.label} \u2014 ${view.detail}` : view.label;
      setText(label, spoken);
      setText(detail, view.tone !== "offline" && view.detail ? `\u00B7 ${view.detail}` : "");
      if (view.countdown !== undefined) setAttr(root, "data-countdown", view.countdown);
      else root.removeAttribute("data-countdown");
      root.title = view.detail ? `${view.label}: ${view.detail}` : view.label;
      retry.hidden = !(state.kind === "offline" && state.reason !== "auth");
    },
  };
}
