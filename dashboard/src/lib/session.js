/**
 * The admin's session for this tab: the JWT from ``POST /auth/login`` kept
 * in ``sessionStorage`` (gone when the tab closes, not shared with other
 * tabs), and when it runs out.
 *
 * The storage is injected (``sessionStorage`` in the browser, a Map-backed
 * stand-in in tests); a storage that throws (private mode, disabled
 * storage) degrades to memory only: the session then lasts until reload.
 */

import { isNum } from "./format.js";

export const SESSION_KEY = "essen.dashboard.session";

/** Treat a token as expired this long before its ``exp`` (clock skew, in-flight requests). */
export const EXPIRY_MARGIN_S = 5;

function valid(session) {
  return (
    session !== null &&
    typeof session === "object" &&
    typeof session.token === "string" &&
    session.token.length > 0 &&
    typeof session.username === "string" &&
    isNum(session.expires_at)
  );
}

export class SessionStore {
  constructor(storage) {
    this.storage = storage ?? null;
    this.memory = null;
  }

  /** The stored session if it is still valid at ``nowSec``; an expired one is removed. */
  load(nowSec) {
    let session = this.memory;
    if (!session && this.storage) {
      try {
        const raw = this.storage.getItem(SESSION_KEY);
        session = raw ? JSON.parse(raw) : null;
      } catch {
        session = null;
      }
    }
    if (!valid(session)) {
      if (session) this.clear();
      return null;
    }
    if (isExpired(session, nowSec)) {
      this.clear();
      return null;
    }
    this.memory = session;
    return session;
  }

  /** Keep ``{token, username, expires_at}`` for this tab. */
  save(session) {
    if (!valid(session)) throw new TypeError("a session needs token, username and expires_at");
    const kept = { token: session.token, username: session.username, expires_at: session.expires_at };
    this.memory = kept;
    try {
      this.storage?.setItem(SESSION_KEY, JSON.stringify(kept));
    } catch {
      // Storage unavailable: memory only.
    }
    return kept;
  }

  clear() {
    this.memory = null;
    try {
      this.storage?.removeItem(SESSION_KEY);
    } catch {
      // Nothing to clear.
    }
  }

  /** The token of the current session, or null. */
  get token() {
    return this.memory?.token ?? null;
  }
}

/** True when ``session`` is expired at ``nowSec`` (with {@link EXPIRY_MARGIN_S}). */
export function isExpired(session, nowSec) {
  return !valid(session) || session.expires_at - EXPIRY_MARGIN_S <= nowSec;
}

/** Milliseconds until ``session`` should be treated as expired (0 if it is). */
export function msUntilExpiry(session, nowMs) {
  if (!valid(session)) return 0;
  return Math.max(0, (session.expires_at - EXPIRY_MARGIN_S) * 1000 - nowMs);
}
