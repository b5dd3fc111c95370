import assert from "node:assert/strict";
import { test } from "node:test";

import { ApiError, createApi, loginErrorMessage, parseRetryAfter, sessionEndedMessage } from "../src/lib/api.js";
import { DEFAULTS, joinUrl, resolveConfig } from "../src/lib/config.js";
import { SessionStore, isExpired, msUntilExpiry, SESSION_KEY } from "../src/lib/session.js";

/** A fetch that answers from a list of [status, body, headers] and records requests. */
function fakeFetch(...answers) {
  const calls = [];
  const impl = async (url, init) => {
    calls.push({ url, ...init, headers: { ...init.headers } });
    const next = answers.shift();
    if (next instanceof Error) throw next;
    const [status, body, headers = {}] = next;
    return {
      status,
      ok: status >= 200 && status < 300,
      headers: { get: (name) => headers[name] ?? headers[name.toLowerCase()] ?? null },
      text: async () => (body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body)),
    };
  };
  return { impl, calls };
}

test("login posts JSON to {apiBase}/auth/login without a token", async () => {
  const f = fakeFetch([200, { token: "jwt", username: "ada", expires_at: 1700003600 }]);
  const api = createApi({ apiBase: "/api/", fetch: f.impl, getToken: () => "should-not-be-sent" });
  const result = await api.login("ada", "pw");
  assert.deepEqual(result, { token: "jwt", username: "ada", expires_at: 1700003600 });
  assert.equal(f.calls[0].url, "/api/auth/login");
  assert.equal(f.calls[0].method, "POST");
  assert.equal(f.calls[0].headers.Authorization, undefined);
  assert.equal(f.calls[0].headers["Content-Type"], "application/json");
  assert.deepEqual(JSON.parse(f.calls[0].body), { username: "ada", password: "pw" });
});

test("login errors: 401, 429 with Retry-After, 400, network", async () => {
  const f = fakeFetch(
    [401, { error: "invalid_credentials" }],
    [429, { error: "too_many_attempts", retry_after: 30 }, { "Retry-After": "31" }],
    [400, { error: "invalid_request", message: "username and password are required" }],
    new TypeError("Failed to fetch"),
  );
  let unauthorized = 0;
  const api = createApi({ apiBase: "/api", fetch: f.impl, onUnauthorized: () => (unauthorized += 1) });
  const e401 = await api.login("a", "b").catch((e) => e);
  assert.ok(e401 instanceof ApiError);
  assert.equal(e401.status, 401);
  assert.equal(e401.code, "invalid_credentials");
  assert.equal(loginErrorMessage(e401), "Invalid username or password.");
  assert.equal(unauthorized, 0, "a failed login is not a lost session");

  const e429 = await api.login("a", "b").catch((e) => e);
  assert.equal(e429.status, 429);
  assert.equal(e429.retryAfter, 31);
  assert.equal(loginErrorMessage(e429), "Too many sign-in attempts. Try again in 31 s.");

  const e400 = await api.login("a", "b").catch((e) => e);
  assert.equal(e400.detail, "username and password are required");

  const eNet = await api.login("a", "b").catch((e) => e);
  assert.equal(eNet.status, 0);
  assert.equal(eNet.code, "network");
  assert.match(loginErrorMessage(eNet), /cannot be reached/);
});

test("authenticated calls send the bearer token; a 401 ends the session", async () => {
  const f = fakeFetch(
    [200, { range: "24h", hours: [] }],
    [200, { components: [] }],
    [401, { error: "expired" }],
    [204, undefined],
  );
  const ended = [];
  const api = createApi({ apiBase: "https://admin.example.com/api", fetch: f.impl, getToken: () => "tok", onUnauthorized: (c) => ended.push(c) });
  assert.deepEqual(await api.history("24h"), { range: "24h", hours: [] });
  assert.equal(f.calls[0].url, "https://admin.example.com/api/monitoring/metrics?range=24h");
  assert.equal(f.calls[0].headers.Authorization, "Bearer tok");
  await api.healthComprehensive();
  assert.equal(f.calls[1].url, "https://admin.example.com/api/monitoring/health-comprehensive");
  const e = await api.metrics().catch((err) => err);
  assert.equal(e.code, "expired");
  assert.deepEqual(ended, ["expired"]);
  assert.equal(await api.logout(), undefined);
  assert.equal(f.calls[3].method, "POST");
  assert.equal(f.calls[3].url, "https://admin.example.com/api/auth/logout");
});

test("no token: no request at all", async () => {
  const f = fakeFetch();
  const ended = [];
  const api = createApi({ apiBase: "/api", fetch: f.impl, getToken: () => null, onUnauthorized: (c) => ended.push(c) });
  const e = await api.me().catch((err) => err);
  assert.equal(e.code, "no_token");
  assert.equal(f.calls.length, 0);
  assert.deepEqual(ended, ["no_token"]);
});

test("a non-JSON error page still gives an ApiError", async () => {
  const f = fakeFetch([502, "<html>Bad gateway</html>"]);
  const api = createApi({ apiBase: "/api", fetch: f.impl, getToken: () => "t" });
  const e = await api.metrics().catch((err) => err);
  assert.equal(e.status, 502);
  assert.equal(e.code, "http_502");
});

test("Retry-After parsing", () => {
  assert.equal(parseRetryAfter("12", null), 12);
  assert.equal(parseRetryAfter(null, { retry_after: 4.2 }), 5);
  assert.equal(parseRetryAfter("soon", null), null);
});

test("session-ended messages", () => {
  assert.equal(sessionEndedMessage("expired"), "Your session expired. Please sign in again.");
  assert.equal(sessionEndedMessage("token expired"), "Your session expired. Please sign in again.");
  assert.equal(sessionEndedMessage("logout"), "You have signed out.");
  assert.match(sessionEndedMessage("bad_signature"), /no longer valid/);
});

test("config: defaults, overrides, and a socketUrl path is not a namespace", () => {
  const location = { origin: "https://admin.example.com" };
  const { config, warnings } = resolveConfig(undefined, location);
  assert.equal(config.apiBase, "/api");
  assert.equal(config.socketPath, "/api/socket.io/");
  assert.equal(config.socketUrl, "https://admin.example.com");
  assert.deepEqual(config.transports, DEFAULTS.transports);
  assert.deepEqual(warnings, []);

  const custom = resolveConfig(
    { apiBase: "https://x.example/api", socketPath: "socket.io", socketUrl: "https://x.example/api", transports: ["polling", "websocket", "bogus"], feedLimit: "50", reconnectionAttempts: 5 },
    location,
  );
  assert.equal(custom.config.apiBase, "https://x.example/api");
  assert.equal(custom.config.socketPath, "/socket.io/");
  assert.equal(custom.config.socketUrl, "https://x.example");
  assert.match(custom.warnings[0], /has a path/);
  assert.deepEqual(custom.config.transports, ["polling", "websocket"]);
  assert.equal(custom.config.feedLimit, 50);
  assert.equal(custom.config.reconnectionAttempts, 5);
  assert.equal(resolveConfig({ feedLimit: -1 }, location).config.feedLimit, 100);
  assert.equal(joinUrl("/api/", "/auth/login"), "/api/auth/login");
  assert.equal(joinUrl("", "auth/me"), "/auth/me");
});

class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
}

test("the session lives in the tab's storage until it expires", () => {
  const storage = new MemoryStorage();
  const store = new SessionStore(storage);
  assert.equal(store.load(1000), null);
  store.save({ token: "t", username: "ada", expires_at: 2000 });
  assert.equal(new SessionStore(storage).load(1000).token, "t", "a reload in the same tab keeps it");
  assert.equal(isExpired({ token: "t", username: "ada", expires_at: 2000 }, 1996), true, "a few seconds early");
  assert.equal(msUntilExpiry({ token: "t", username: "ada", expires_at: 2000 }, 1_000_000), 995_000);
  assert.equal(new SessionStore(storage).load(1999), null);
  assert.equal(storage.getItem(SESSION_KEY), null, "an expired session is removed");
  storage.setItem(SESSION_KEY, "{not json");
  assert.equal(new SessionStore(storage).load(0), null);
  assert.throws(() => store.save({ token: "", username: "x", expires_at: 1 }), TypeError);
});

test("a storage that throws degrades to memory", () => {
  const broken = {
    getItem() {
      throw new Error("denied");
    },
    setItem() {
      throw new Error("denied");
    },
    removeItem() {
      throw new Error("denied");
    },
  };
  const store = new SessionStore(broken);
  store.save({ token: "t", username: "u", expires_at: 50 });
  assert.equal(store.load(10).token, "t");
  store.clear();
  assert.equal(store.load(10), null);
});
