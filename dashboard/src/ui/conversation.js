/**
 * The conversation panel: a modal ``<dialog>`` with one user's messages
 * (history from ``conversation:join``, then live).  Escape or "Close"
 * closes it and focus returns to the user button that opened it.
 */

import { eventKey } from "../lib/feed.js";
import { byId, reconcileChildren, setText } from "./dom.js";
import { messageRow } from "./feed.js";

export function createConversationView({ onClose }) {
  const dialog = byId("conversation");
  const title = byId("conversation-title");
  const status = byId("conversation-status");
  const list = byId("conversation-list");
  const closeButton = byId("conversation-close");
  let opener = null;
  let renderedVersion = -1;
  let user = null;
  let rows = new Map();

  closeButton.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    const left = user;
    user = null;
    rows = new Map();
    list.replaceChildren();
    if (left) onClose(left);
    if (opener && opener.isConnected) opener.focus();
    opener = null;
  });

  return {
    get open() {
      return dialog.open;
    },
    /** Show the panel for ``forUser``; ``trigger`` gets the focus back on close. */
    show(forUser, trigger) {
      user = forUser;
      opener = trigger ?? document.activeElement;
      renderedVersion = -1;
      rows = new Map();
      list.replaceChildren();
      setText(title, `Conversation with ${forUser}`);
      setText(status, "Loading history\u2026");
      if (!dialog.open) dialog.showModal();
      closeButton.focus();
    },
    setStatus(text) {
      setText(status, text);
    },
    close() {
      if (dialog.open) dialog.close();
    },
    /** Render the {@link Conversation} model (oldest first, new rows appended). */
    render(model) {
      if (!model || model.user !== user || model.version === renderedVersion) return;
      renderedVersion = model.version;
      const next = new Map();
      const elements = model.items.map((event) => {
        const key = eventKey(event);
        const el = rows.get(key) ?? messageRow(event, { testid: "conversation-row" });
        next.set(key, el);
        return el;
      });
      rows = next;
      const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
      reconcileChildren(list, elements);
      if (atBottom) list.scrollTop = list.scrollHeight;
    },
  };
}
