/**
 * Runtime configuration: where the admin API and its Socket.IO endpoint are.
 *
 * ``config.js`` next to ``index.html`` may set ``window.ESSEN_CONFIG`` (App
 * Platform, or any other deployment, replaces that one file; nothing is
 * rebuilt).  Every field is optional:
 *
 * ===================  =====================  ==========================================
 * field                default                meaning
 * ===================  =====================  ==========================================
 * apiBase              "/api"                 REST base (path or absolute URL)
 * socketPath           "/api/socket.io/"      Socket.IO path on the server
 * socketUrl            location.origin        Socket.IO server (origin only, see below)
 * transports           ["websocket"]          socket.io-client transports
 * feedLimit            100                    messages kept in the live feed
 * reconnectionDelay    1000                   first retry delay (ms), doubled each time
 * reconnectionDelayMax 5000                   longest retry delay (ms)
 * reconnectionAttempts Infinity               attempts before showing "offline" for good
 * ===================  =====================  ==========================================
 *
 * ``socketUrl`` must be an origin: socket.io-client reads a path in the URL
 * as a *namespace* (``https://host/api`` would connect to namespace ``/api``),
 * so a path there is dropped with a warning; the path goes in ``socketPath``.
 */

export const DEFAULTS = Object.freeze({
  apiBase: "/api",
  socketPath: "/api/socket.io/",
  socketUrl: null,
  transports: ["websocket"],
  feedLimit: 100,
  reconnectionDelay: 1000,
  reconnectionDelayMax: 5_000,
  reconnectionAttempts: Infinity,
});

const TRANSPORTS = new Set(["websocket", "polling", "webtransport"]);

function positive(value, fallback) {
  const n = Number(value);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

/**
 * The effective configuration from ``raw`` (``window.ESSEN_CONFIG``, maybe
 * undefined) and the page's ``location``.
 *
 * @returns {{config: object, warnings: string[]}}
 */
export function resolveConfig(raw, location) {
  const warnings = [];
  const input = raw && typeof raw === "object" ? raw : {};
  const origin = location?.origin && location.origin !== "null" ? location.origin : "http://localhost";

  const apiBase = typeof input.apiBase === "string" && input.apiBase.trim() ? input.apiBase.trim() : DEFAULTS.apiBase;

  let socketPath = typeof input.socketPath === "string" && input.socketPath.trim() ? input.socketPath.trim() : DEFAULTS.socketPath;
  if (!socketPath.startsWith("/")) socketPath = `/${socketPath}`;
  if (!socketPath.endsWith("/")) socketPath = `${socketPath}/`;

  let socketUrl = origin;
  if (typeof input.socketUrl === "string" && input.socketUrl.trim()) {
    try {
      const url = new URL(input.socketUrl.trim(), origin);
      if (url.pathname !== "/" && url.pathname !== "") {
        warnings.push(`socketUrl ${input.socketUrl} has a path (${url.pathname}); it is ignored (put it in socketPath)`);
      }
      socketUrl = url.origin;
    } catch {
      warnings.push(`socketUrl ${input.socketUrl} is not a URL; using ${origin}`);
    }
  }

  let transports = DEFAULTS.transports;
  if (Array.isArray(input.transports)) {
    const valid = input.transports.filter((t) => TRANSPORTS.has(t));
    if (valid.length) transports = valid;
    else warnings.push("transports has no known transport; using the default");
  }

  const attempts = input.reconnectionAttempts === undefined ? DEFAULTS.reconnectionAttempts : positive(input.reconnectionAttempts, DEFAULTS.reconnectionAttempts);

  return {
    config: Object.freeze({
      apiBase,
      socketPath,
      socketUrl,
      transports: Object.freeze([...transports]),
      feedLimit: Math.floor(positive(input.feedLimit, DEFAULTS.feedLimit)),
      reconnectionDelay: positive(input.reconnectionDelay, DEFAULTS.reconnectionDelay),
      reconnectionDelayMax: positive(input.reconnectionDelayMax, DEFAULTS.reconnectionDelayMax),
      reconnectionAttempts: attempts,
    }),
    warnings,
  };
}

/** ``base`` + ``path`` with exactly one slash between them: ("/api", "auth/login") -> "/api/auth/login". */
export function joinUrl(base, path) {
  const left = String(base ?? "").replace(/\/+$/, "");
  const right = String(path ?? "").replace(/^\/+/, "");
  return `${left}/${right}`;
}
