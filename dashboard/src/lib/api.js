/**
 * The admin API's REST client: login, session, metrics, history, health.
 *
 * ``fetch`` and the token are injected, so this runs the same in the browser
 * and under ``node --test``.  Every failure is an :class:`ApiError` with the
 * HTTP ``status`` (0 when the server could not be reached) and the server's
 * ``code`` (its ``error`` field: ``invalid_credentials``, ``expired``, ...).
 * A 401 on an authenticated call also calls ``onUnauthorized(code)``: the
 * token is no longer good and the page goes back to the login.
 */

import { joinUrl } from "./config.js";

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 for a network failure
   * @param {string} code the server's ``error`` field, or a local one
   * @param {{retryAfter?: number|null, detail?: string|null}} extra
   */
  constructor(status, code, { retryAfter = null, detail = null } = {}) {
    super(detail ? `${code}: ${detail}` : code);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.detail = detail;
  }
}

/** Seconds to wait from a 429: the ``Retry-After`` header (seconds) or the body's ``retry_after``. */
export function parseRetryAfter(header, body) {
  const fromHeader = Number.parseFloat(header ?? "");
  if (Number.isFinite(fromHeader) && fromHeader >= 0) return Math.ceil(fromHeader);
  const fromBody = Number(body?.retry_after);
  if (Number.isFinite(fromBody) && fromBody >= 0) return Math.ceil(fromBody);
  return null;
}

/** What the login form says for a failed login. */
export function loginErrorMessage(error) {
  if (!(error instanceof ApiError)) return "Sign-in failed. Please try again.";
  if (error.status === 0) return "The admin API cannot be reached. Check the connection and try again.";
  if (error.status === 401) return "Invalid username or password.";
  if (error.status === 429) {
    return error.retryAfter
      ? `Too many sign-in attempts. Try again in ${error.retryAfter} s.`
      : "Too many sign-in attempts. Try again later.";
  }
  if (error.status === 400) return "Enter a username and a password.";
  return `Sign-in failed (${error.status || "network"}). Please try again.`;
}

/** What the login page says when a session ended for ``reason``. */
export function sessionEndedMessage(reason) {
  switch (reason) {
    case "expired":
    case "token expired":
      return "Your session expired. Please sign in again.";
    case "revoked":
      return "Your session was ended. Please sign in again.";
    case "logout":
      return "You have signed out.";
    case "no_token":
    case "missing":
      return "Please sign in.";
    default:
      return "Your session is no longer valid. Please sign in again.";
  }
}

/**
 * @param {{apiBase: string, fetch?: typeof fetch, getToken?: () => string|null,
 *          onUnauthorized?: (code: string) => void, timeoutMs?: number}} options
 */
export function createApi({ apiBase, fetch: fetchImpl = globalThis.fetch, getToken = () => null, onUnauthorized = () => {}, timeoutMs = 15_000 }) {
  async function request(method, path, { body, auth = true, query } = {}) {
    let url = joinUrl(apiBase, path);
    if (query) {
      const params = new URLSearchParams(query).toString();
      if (params) url += `?${params}`;
    }
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth) {
      const token = getToken();
      if (!token) {
        onUnauthorized("no_token");
        throw new ApiError(401, "no_token");
      }
      headers.Authorization = `Bearer ${token}`;
    }
    const controller = typeof AbortController === "function" ? new AbortController() : null;
    const timer = controller ? setTimeout(() => controller.abort(), timeoutMs) : null;
    let response;
    try {
      response = await fetchImpl(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit",
        cache: "no-store",
        signal: controller?.signal,
      });
    } catch (error) {
      throw new ApiError(0, controller?.signal.aborted ? "timeout" : "network", { detail: error?.message ?? null });
    } finally {
      if (timer) clearTimeout(timer);
    }
    let payload = null;
    if (response.status !== 204) {
      const text = await response.text();
      if (text) {
        try {
          payload = JSON.parse(text);
        } catch {
          payload = null;
        }
      }
    }
    if (!response.ok) {
      const code = typeof payload?.error === "string" ? payload.error : `http_${response.status}`;
      const retryAfter = response.status === 429 ? parseRetryAfter(response.headers?.get?.("Retry-After"), payload) : null;
      const detail = typeof payload?.message === "string" ? payload.message : null;
      if (response.status === 401 && auth) onUnauthorized(code);
      throw new ApiError(response.status, code, { retryAfter, detail });
    }
    return payload;
  }

  return {
    /** ``{token, username, expires_at}``; throws ApiError (401 bad credentials, 429 throttled). */
    async login(username, password) {
      const result = await request("POST", "auth/login", { body: { username, password }, auth: false });
      if (!result || typeof result.token !== "string" || !result.token) throw new ApiError(500, "invalid_response");
      return { token: result.token, username: result.username ?? username, expires_at: Number(result.expires_at) };
    },
    /** ``{username, expires_at}`` of the current token. */
    me() {
      return request("GET", "auth/me");
    },
    /** End the session on the server (the token stops working). */
    async logout() {
      await request("POST", "auth/logout");
    },
    /** The merged metrics (same object as ``metrics:update``). */
    metrics() {
      return request("GET", "monitoring/metrics");
    },
    /** ``{range, hours: [{hour_epoch, received, answered, failed}]}`` for "24h" or "7d". */
    history(range) {
      return request("GET", "monitoring/metrics", { query: { range } });
    },
    /** ``{components, instances, admin, sockets, store, ...}``. */
    healthComprehensive() {
      return request("GET", "monitoring/health-comprehensive");
    },
  };
}
