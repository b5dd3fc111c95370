/**
 * The connection indicator's state machine: live / reconnecting (with a
 * countdown) / offline, and the in-between states that keep the page from
 * calling stale numbers live.
 *
 * Theory of operation
 * -------------------
 * States (``state.kind``)::
 *
 *   idle ──start──▶ connecting ──connected──▶ syncing ──synced──▶ live
 *                       │                        │                  │
 *                       └──────── disconnected / connectFailed ─────┘
 *                                           ▼
 *                     reconnecting {attempt, retryAt | null}
 *                       ▲   │ retryScheduled(attempt, delay) sets retryAt (countdown)
 *                       │   │ retrying(attempt) clears it (attempt in flight)
 *                       │   ▼
 *                     offline {reason}   (browser offline, attempts exhausted,
 *                                         session rejected, or stopped)
 *
 * * **live** only after the subscribe snapshot has been applied: a socket
 *   that is connected but not yet resynchronised is *syncing*, and the page
 *   marks its numbers as not live.
 * * **reconnecting** carries socket.io's attempt number and, once
 *   socket.io's manager has scheduled the next attempt, the instant it will
 *   fire (``retryAt``, from the backoff delay): the countdown is
 *   ``ceil((retryAt - now) / 1000)`` seconds.
 * * **offline** when the browser says it is offline (socket.io keeps trying
 *   in the background; ``browserOnline`` goes back to reconnecting), when
 *   socket.io gives up (``reconnect_failed``), when the server refuses the
 *   session (``reason: "auth"``: the page returns to the login) or when the
 *   page stopped the connection.
 *
 * Every transition takes ``now`` (milliseconds) and returns the new state;
 * states are frozen plain objects, so a renderer can compare them by
 * identity.  Events that make no sense in the current state are ignored
 * (returning the same state): socket.io's events race with the browser's.
 */

/** @typedef {"idle"|"connecting"|"syncing"|"live"|"reconnecting"|"offline"} ConnectionKind */

function make(kind, now, extra = {}) {
  return Object.freeze({ kind, since: now, attempt: 0, retryAt: null, reason: null, error: null, recovered: false, ...extra });
}

export class ConnectionMachine {
  constructor(now = 0) {
    this.state = make("idle", now);
    /** Set while the browser reports no network. */
    this.browserOffline = false;
    this.listeners = new Set();
  }

  /** Call ``listener(state, previous)`` after every change; returns an unsubscribe function. */
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  _go(next) {
    const previous = this.state;
    if (next === previous) return previous;
    this.state = next;
    for (const listener of this.listeners) listener(next, previous);
    return next;
  }

  /** The page starts connecting (login done). */
  start(now) {
    this.browserOffline = false;
    return this._go(make("connecting", now));
  }

  /** The socket is connected (``recovered``: socket.io replayed what was missed). */
  connected(now, { recovered = false } = {}) {
    if (this.state.kind === "idle") return this.state;
    return this._go(make("syncing", now, { recovered: Boolean(recovered) }));
  }

  /** The subscribe snapshot was applied: the page is live. */
  synced(now) {
    if (this.state.kind !== "syncing") return this.state;
    return this._go(make("live", now, { recovered: this.state.recovered }));
  }

  /** The socket lost its connection (any reason but the page's own disconnect). */
  disconnected(now, reason = null) {
    const kind = this.state.kind;
    if (kind === "idle" || kind === "offline") return this.state;
    if (kind === "reconnecting") return this.state;
    if (this.browserOffline) return this._go(make("offline", now, { reason: "network", error: reason }));
    return this._go(make("reconnecting", now, { attempt: 0, retryAt: null, error: reason }));
  }

  /** socket.io's manager scheduled attempt ``attempt`` in ``delayMs``. */
  retryScheduled(now, { attempt, delayMs }) {
    const kind = this.state.kind;
    if (kind === "idle" || kind === "live" || kind === "syncing") return this.state;
    const retryAt = now + Math.max(0, delayMs);
    if (kind === "offline") {
      if (this.state.reason !== "network") return this.state;
      // Keep showing offline, but remember when the next try is.
      return this._go(make("offline", this.state.since, { reason: "network", attempt, retryAt, error: this.state.error }));
    }
    const since = kind === "reconnecting" ? this.state.since : now;
    return this._go(make("reconnecting", since, { attempt, retryAt, error: this.state.error }));
  }

  /** socket.io's manager is making attempt ``attempt`` now. */
  retrying(now, attempt) {
    const kind = this.state.kind;
    if (kind === "idle" || kind === "live" || kind === "syncing" || kind === "offline") return this.state;
    const since = kind === "reconnecting" ? this.state.since : now;
    return this._go(make("reconnecting", since, { attempt, retryAt: null, error: this.state.error }));
  }

  /**
   * A connection attempt failed.  ``auth`` (the server refused the session:
   * bad or expired token) is final; anything else is a transport error that
   * socket.io retries.
   */
  connectFailed(now, { message = null, auth = false } = {}) {
    const kind = this.state.kind;
    if (kind === "idle") return this.state;
    if (auth) return this._go(make("offline", now, { reason: "auth", error: message }));
    if (kind === "offline") return this.state;
    if (kind === "reconnecting") {
      return this._go(make("reconnecting", this.state.since, { attempt: this.state.attempt, retryAt: this.state.retryAt, error: message }));
    }
    if (this.browserOffline) return this._go(make("offline", now, { reason: "network", error: message }));
    return this._go(make("reconnecting", now, { attempt: 0, retryAt: null, error: message }));
  }

  /** socket.io ran out of attempts. */
  gaveUp(now) {
    if (this.state.kind === "idle") return this.state;
    return this._go(make("offline", now, { reason: "gave-up", attempt: this.state.attempt, error: this.state.error }));
  }

  /** The browser lost its network. */
  browserWentOffline(now) {
    this.browserOffline = true;
    const kind = this.state.kind;
    if (kind === "idle" || (kind === "offline" && this.state.reason !== "network")) return this.state;
    return this._go(make("offline", now, { reason: "network", attempt: this.state.attempt, retryAt: this.state.retryAt }));
  }

  /** The browser has a network again. */
  browserWentOnline(now) {
    this.browserOffline = false;
    if (this.state.kind !== "offline" || this.state.reason !== "network") return this.state;
    return this._go(make("reconnecting", now, { attempt: this.state.attempt, retryAt: this.state.retryAt }));
  }

  /** The page retries by itself after giving up (the "Reconnect" button). */
  manualRetry(now) {
    if (this.state.kind !== "offline" || this.state.reason === "auth" || this.state.reason === "stopped") return this.state;
    return this._go(make("reconnecting", now, { attempt: 0, retryAt: null }));
  }

  /** The page closed the connection (logout). */
  stop(now) {
    return this._go(make("idle", now));
  }

  /** True when the numbers on the page are live. */
  get isLive() {
    return this.state.kind === "live";
  }
}

/** Whole seconds until the next attempt (0 when due or unknown), for the countdown. */
export function countdownSeconds(state, now) {
  if (state.retryAt === null || state.retryAt === undefined) return null;
  return Math.max(0, Math.ceil((state.retryAt - now) / 1000));
}

/**
 * What the indicator says: a short ``label`` (the live region's text), a
 * ``detail`` that may tick every second (the countdown), and the
 * ``tone`` it is drawn in.
 */
export function describeConnection(state, now) {
  switch (state.kind) {
    case "idle":
      return { label: "Not connected", detail: "", tone: "offline" };
    case "connecting":
      return { label: "Connecting", detail: "", tone: "pending" };
    case "syncing":
      return { label: "Synchronising", detail: "loading the current state", tone: "pending" };
    case "live":
      return { label: "Live", detail: "", tone: "live" };
    case "reconnecting": {
      const seconds = countdownSeconds(state, now);
      const attempt = state.attempt > 0 ? ` (attempt ${state.attempt})` : "";
      if (seconds === null) {
        return { label: "Reconnecting", detail: state.attempt > 0 ? `trying now${attempt}` : "connection lost", tone: "pending" };
      }
      return {
        label: "Reconnecting",
        detail: seconds > 0 ? `retry in ${seconds} s${attempt}` : `trying now${attempt}`,
        tone: "pending",
        countdown: seconds,
      };
    }
    case "offline": {
      const reasons = {
        network: "no network",
        "gave-up": "the admin API cannot be reached",
        auth: "session rejected",
        stopped: "disconnected",
      };
      return { label: "Offline", detail: reasons[state.reason] ?? "", tone: "offline" };
    }
    default:
      return { label: "Unknown", detail: "", tone: "offline" };
  }
}
