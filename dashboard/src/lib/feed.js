/**
 * The live message feed and one user's conversation, as data.
 *
 * :class:`FeedModel` holds the newest ``limit`` ``message:processed`` events
 * (older ones drop off), shows them newest first through a filter, and can
 * be paused: while paused what is shown stays put and new events wait
 * (also capped, the oldest dropping off and counted as missed); resuming
 * merges them in.  Events are identified by ``(instance, id, direction)``:
 * the same event seen twice (once replayed by connection-state recovery,
 * once in the snapshot) is kept once.
 *
 * :class:`Conversation` keeps one user's history plus that user's live
 * events, oldest first, deduplicated the same way.
 *
 * Pure: no DOM, no clock.
 */

import { isNum } from "./format.js";

/** Message kinds grouped into the feed's "Type" filter. */
export const FEED_TYPES = Object.freeze([
  { value: "all", label: "All types", kinds: null },
  { value: "text", label: "Text", kinds: ["text"] },
  { value: "quick_reply", label: "Quick reply", kinds: ["quick_reply"] },
  { value: "attachment", label: "Attachment", kinds: ["attachment"] },
  { value: "postback", label: "Postback", kinds: ["postback"] },
  { value: "echo", label: "Echo", kinds: ["echo"] },
  { value: "receipts", label: "Delivery & read", kinds: ["delivery", "read"] },
  { value: "other", label: "Other", kinds: ["optin", "referral", "handover", "standby", "unknown"] },
]);

export const FEED_DIRECTIONS = Object.freeze([
  { value: "all", label: "Both directions" },
  { value: "in", label: "Incoming" },
  { value: "out", label: "Outgoing" },
]);

export const FEED_OUTCOMES = Object.freeze([
  { value: "all", label: "Any outcome" },
  { value: "answered", label: "Answered" },
  { value: "failed", label: "Failed" },
  { value: "other", label: "Other outcomes" },
]);

export const DEFAULT_FILTER = Object.freeze({ type: "all", direction: "all", outcome: "all" });

const KNOWN_TYPE_KINDS = new Set(FEED_TYPES.flatMap((t) => t.kinds ?? []));

/** The identity of an event: the same event from two paths is kept once. */
export function eventKey(event) {
  return `${event?.instance ?? ""}\u0000${event?.id ?? ""}\u0000${event?.direction ?? ""}`;
}

/** True when ``event`` is a usable ``message:processed`` payload. */
export function isMessageEvent(event) {
  return (
    event !== null &&
    typeof event === "object" &&
    typeof event.id === "string" &&
    typeof event.user === "string" &&
    (event.direction === "in" || event.direction === "out") &&
    isNum(event.at)
  );
}

/** Whether ``event`` passes ``filter`` ({type, direction, outcome}). */
export function matchesFilter(event, filter = DEFAULT_FILTER) {
  const type = filter.type ?? "all";
  if (type !== "all") {
    const spec = FEED_TYPES.find((t) => t.value === type);
    if (spec && spec.kinds) {
      // "other" also catches kinds this page does not know yet.
      const inOther = type === "other" && !KNOWN_TYPE_KINDS.has(event.kind);
      if (!spec.kinds.includes(event.kind) && !inOther) return false;
    }
  }
  const direction = filter.direction ?? "all";
  if (direction !== "all" && event.direction !== direction) return false;
  const outcome = filter.outcome ?? "all";
  if (outcome === "answered" || outcome === "failed") {
    if (event.outcome !== outcome) return false;
  } else if (outcome === "other") {
    if (event.outcome === "answered" || event.outcome === "failed") return false;
  }
  return true;
}

/** Keep the newest ``limit`` of ``events`` (oldest first), deduplicated; returns [kept, dropped]. */
function capUnique(events, limit) {
  const seen = new Set();
  const unique = [];
  for (let i = events.length - 1; i >= 0; i -= 1) {
    const key = eventKey(events[i]);
    if (seen.has(key)) continue;
    seen.add(key);
    unique.push(events[i]);
  }
  unique.reverse();
  const dropped = Math.max(0, unique.length - limit);
  return [dropped ? unique.slice(dropped) : unique, dropped];
}

export class FeedModel {
  /**
   * @param {{limit?: number}} options ``limit``: events kept (and shown at most).
   */
  constructor({ limit = 100 } = {}) {
    if (!(limit >= 1)) throw new RangeError("limit must be at least 1");
    this.limit = limit;
    /** Shown events, oldest first. */
    this.items = [];
    this.keys = new Set();
    this.filter = { ...DEFAULT_FILTER };
    this.paused = false;
    /** While paused: events waiting, oldest first (capped at ``limit``). */
    this.pending = [];
    /** While paused: a snapshot that arrived (resync) and replaces everything on resume. */
    this.pendingReset = null;
    /** Events that dropped out of the pending buffer while paused. */
    this.missed = 0;
    this.version = 0;
  }

  /** Replace everything with ``events`` (oldest first), e.g. from a snapshot. */
  reset(events) {
    const valid = (events ?? []).filter(isMessageEvent);
    if (this.paused) {
      this.pendingReset = valid;
      this.pending = [];
      this.version += 1;
      return;
    }
    this._setItems(valid);
  }

  /** Add one live event; returns true when what is shown changed. */
  add(event) {
    if (!isMessageEvent(event)) return false;
    if (this.paused) {
      const key = eventKey(event);
      if (this.keys.has(key) && this.pendingReset === null) return false;
      if (this.pending.some((e) => eventKey(e) === key)) return false;
      this.pending.push(event);
      if (this.pending.length > this.limit) {
        this.pending.shift();
        this.missed += 1;
      }
      this.version += 1;
      return false;
    }
    const key = eventKey(event);
    if (this.keys.has(key)) return false;
    this.items.push(event);
    this.keys.add(key);
    while (this.items.length > this.limit) {
      this.keys.delete(eventKey(this.items.shift()));
    }
    this.version += 1;
    return true;
  }

  pause() {
    if (this.paused) return;
    this.paused = true;
    this.pending = [];
    this.pendingReset = null;
    this.missed = 0;
    this.version += 1;
  }

  /** Resume: waiting events (and a snapshot that came meanwhile) are merged in. */
  resume() {
    if (!this.paused) return;
    this.paused = false;
    const base = this.pendingReset ?? this.items;
    this._setItems([...base, ...this.pending]);
    this.pending = [];
    this.pendingReset = null;
    this.missed = 0;
  }

  /** Events waiting to be shown (while paused). */
  get pendingCount() {
    return this.pending.length + this.missed;
  }

  setFilter(filter) {
    this.filter = { ...DEFAULT_FILTER, ...filter };
    this.version += 1;
  }

  /** What the feed shows: newest first, filtered. */
  visible() {
    const shown = [];
    for (let i = this.items.length - 1; i >= 0; i -= 1) {
      if (matchesFilter(this.items[i], this.filter)) shown.push(this.items[i]);
    }
    return shown;
  }

  clear() {
    this.items = [];
    this.keys = new Set();
    this.pending = [];
    this.pendingReset = null;
    this.missed = 0;
    this.paused = false;
    this.version += 1;
  }

  _setItems(events) {
    const [kept] = capUnique(events, this.limit);
    this.items = kept;
    this.keys = new Set(kept.map(eventKey));
    this.version += 1;
  }
}

/** One user's messages: history from ``conversation:join`` plus live events, oldest first. */
export class Conversation {
  constructor(user, { limit = 200 } = {}) {
    this.user = user;
    this.limit = limit;
    this.items = [];
    this.keys = new Set();
    this.version = 0;
  }

  /** Replace with ``history`` (oldest first), keeping live events that arrived meanwhile. */
  reset(history) {
    const mine = (history ?? []).filter((e) => isMessageEvent(e) && e.user === this.user);
    const merged = [...mine, ...this.items].sort((a, b) => a.at - b.at);
    const [kept] = capUnique(merged, this.limit);
    this.items = kept;
    this.keys = new Set(kept.map(eventKey));
    this.version += 1;
  }

  /** Add a live event if it is this user's; returns true when added. */
  add(event) {
    if (!isMessageEvent(event) || event.user !== this.user) return false;
    const key = eventKey(event);
    if (this.keys.has(key)) return false;
    this.items.push(event);
    this.keys.add(key);
    while (this.items.length > this.limit) this.keys.delete(eventKey(this.items.shift()));
    this.version += 1;
    return true;
  }
}
