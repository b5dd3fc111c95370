/**
 * The dashboard's Socket.IO session: connect with the admin's token,
 * subscribe to ``monitoring``, resynchronise after every reconnect, and
 * report what happens to the {@link ConnectionMachine}.
 *
 * Theory of operation
 * -------------------
 * * socket.io-client's manager does the reconnecting (exponential backoff
 *   with jitter).  To show a countdown the page needs each delay when it is
 *   *scheduled*, which the manager does not emit; {@link observeBackoff}
 *   wraps its backoff's ``duration()`` to report ``(attempt, delay)``.
 * * After every ``connect`` (first or re-) the page is *syncing*: it emits
 *   ``subscribe`` and waits for the ack's snapshot, which replaces the whole
 *   page state.  Live events that arrive meanwhile are held and replayed
 *   after the snapshot (messages and health; they are deduplicated or
 *   ordered by ``since``), and a ``metrics:update`` is dropped (the next one
 *   is at most a second away), so nothing older than the snapshot paints
 *   over it.  Only then is the page *live*.  socket.io's ``recovered`` flag
 *   is reported but changes nothing: the snapshot is taken either way.
 * * A refused connection (``connect_error`` from the server's middleware:
 *   ``no_token``, ``expired``, ``bad_signature``...) and ``auth:expired``
 *   end the session: ``onSessionEnded(reason)``.  A transport error is left
 *   to the manager's retries.
 * * A disconnect by the server (other than for the token) is not retried by
 *   socket.io; this module reconnects after ``reconnectionDelay``.
 * * Handlers take only the payload: with connection-state recovery the
 *   server appends an offset argument, which is ignored.
 *
 * ``io`` and the timers are injected, so the tests drive this with a fake
 * socket or with a real socket.io server.
 */

export const SUBSCRIBE_TIMEOUT_MS = 10_000;
export const JOIN_TIMEOUT_MS = 10_000;

/** The reasons a refused connection gives that mean "sign in again". */
export const SESSION_REASONS = new Set([
  "no_token",
  "missing",
  "expired",
  "bad_signature",
  "malformed",
  "wrong_audience",
  "wrong_issuer",
  "revoked",
]);

/**
 * Report every backoff delay the manager schedules: ``onScheduled({attempt, delayMs})``.
 * Returns a function that removes the hook.  A manager without a backoff
 * (another client version) is left alone: the countdown is then unknown
 * and the indicator says "reconnecting" without one.
 */
export function observeBackoff(manager, onScheduled) {
  const backoff = manager?.backoff;
  if (!backoff || typeof backoff.duration !== "function") return () => {};
  const original = backoff.duration;
  backoff.duration = function duration(...args) {
    const delayMs = original.apply(this, args);
    try {
      onScheduled({ attempt: this.attempts, delayMs });
    } catch (error) {
      // Never break socket.io's reconnection because of the indicator.
      globalThis.console?.error?.(error);
    }
    return delayMs;
  };
  return () => {
    backoff.duration = original;
  };
}

/** True when a ``connect_error`` is the server refusing the session (not a transport failure). */
export function isSessionRefusal(error, socket) {
  const reason = error?.data?.reason;
  if (typeof reason === "string" && reason) return true;
  if (SESSION_REASONS.has(error?.message)) return true;
  // socket.io destroys the socket (inactive) when the server sends CONNECT_ERROR.
  return socket ? socket.active === false : false;
}

/**
 * Open the session.
 *
 * @param {object} options
 * @param {Function} options.io socket.io-client's ``io``
 * @param {object} options.config from resolveConfig
 * @param {() => string|null} options.getToken
 * @param {import("./connection.js").ConnectionMachine} options.machine
 * @param {{snapshot: Function, metrics: Function, message: Function, health: Function,
 *          conversation?: Function, sessionEnded: Function}} options.handlers
 * @param {() => number} [options.now] milliseconds
 */
export function createRealtime({
  io,
  config,
  getToken,
  machine,
  handlers,
  now = () => Date.now(),
  timers = { setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (id) => clearTimeout(id) },
  subscribeTimeoutMs = SUBSCRIBE_TIMEOUT_MS,
}) {
  const socket = io(config.socketUrl, {
    path: config.socketPath,
    transports: [...config.transports],
    autoConnect: false,
    reconnectionDelay: config.reconnectionDelay,
    reconnectionDelayMax: config.reconnectionDelayMax,
    reconnectionAttempts: config.reconnectionAttempts,
    // A function, so every reconnect sends the current token.
    auth: (cb) => cb({ token: getToken() }),
  });

  let generation = 0;
  let syncing = false;
  let held = [];
  let closed = false;
  let sessionEnded = false;
  let retryTimer = null;
  /** The conversation to rejoin after a reconnect. */
  let conversationUser = null;

  const unhook = observeBackoff(socket.io, ({ attempt, delayMs }) => {
    if (!closed) machine.retryScheduled(now(), { attempt, delayMs });
  });

  function endSession(reason) {
    if (sessionEnded || closed) return;
    sessionEnded = true;
    machine.connectFailed(now(), { message: reason, auth: true });
    handlers.sessionEnded(reason);
  }

  function clearRetry() {
    if (retryTimer !== null) {
      timers.clearTimeout(retryTimer);
      retryTimer = null;
    }
  }

  function subscribe() {
    const mine = generation;
    syncing = true;
    held = [];
    socket.timeout(subscribeTimeoutMs).emit("subscribe", "monitoring", (error, ack) => {
      if (mine !== generation || closed || !socket.connected) return;
      if (error || !ack || ack.ok !== true) {
        // Timed out or refused: ask again shortly while connected.
        clearRetry();
        retryTimer = timers.setTimeout(() => {
          retryTimer = null;
          if (mine === generation && socket.connected) subscribe();
        }, config.reconnectionDelay);
        return;
      }
      handlers.snapshot(ack.snapshot ?? {}, { recovered: Boolean(socket.recovered) });
      const replay = held;
      held = [];
      syncing = false;
      for (const [kind, payload] of replay) {
        if (kind === "message") handlers.message(payload);
        else handlers.health(payload);
      }
      machine.synced(now());
      if (conversationUser) rejoin(conversationUser, mine);
    });
  }

  function rejoin(user, mine) {
    socket.timeout(JOIN_TIMEOUT_MS).emit("conversation:join", user, (error, ack) => {
      if (mine !== generation || closed || user !== conversationUser) return;
      if (!error && ack?.ok) handlers.conversation?.(user, ack.history ?? []);
    });
  }

  socket.on("connect", () => {
    generation += 1;
    clearRetry();
    machine.connected(now(), { recovered: Boolean(socket.recovered) });
    subscribe();
  });

  socket.on("disconnect", (reason) => {
    generation += 1;
    syncing = false;
    held = [];
    clearRetry();
    if (closed || sessionEnded || reason === "io client disconnect") return;
    machine.disconnected(now(), reason);
    if (reason === "io server disconnect") {
      // The server closed this socket on purpose; socket.io will not retry by itself.
      machine.retryScheduled(now(), { attempt: 1, delayMs: config.reconnectionDelay });
      retryTimer = timers.setTimeout(() => {
        retryTimer = null;
        if (!closed && !sessionEnded && !socket.connected) socket.connect();
      }, config.reconnectionDelay);
    }
  });

  socket.on("connect_error", (error) => {
    if (closed) return;
    if (isSessionRefusal(error, socket)) {
      endSession(error?.data?.reason ?? error?.message ?? "rejected");
      return;
    }
    machine.connectFailed(now(), { message: error?.message ?? "connection failed" });
  });

  socket.io.on("reconnect_attempt", (attempt) => {
    if (!closed) machine.retrying(now(), attempt);
  });
  socket.io.on("reconnect_failed", () => {
    if (!closed) machine.gaveUp(now());
  });

  socket.on("auth:expired", (payload) => {
    endSession(payload?.reason === "token expired" ? "expired" : (payload?.reason ?? "expired"));
    socket.disconnect();
  });

  socket.on("metrics:update", (metrics) => {
    if (!syncing) handlers.metrics(metrics);
  });
  socket.on("message:processed", (event) => {
    if (syncing) held.push(["message", event]);
    else handlers.message(event);
  });
  socket.on("health:changed", (change) => {
    if (syncing) held.push(["health", change]);
    else handlers.health(change);
  });

  return {
    socket,
    /** Start connecting. */
    start() {
      closed = false;
      sessionEnded = false;
      machine.start(now());
      socket.connect();
    },
    /** Try again now (after giving up, or when the network is back). */
    retryNow() {
      if (closed || sessionEnded || socket.connected) return;
      clearRetry();
      machine.manualRetry(now());
      socket.disconnect();
      socket.connect();
    },
    /**
     * Join ``user``'s conversation: resolves with the history (oldest first);
     * rejects when not connected, refused or timed out.  Rejoined after reconnects.
     */
    joinConversation(user) {
      conversationUser = user;
      return new Promise((resolve, reject) => {
        if (!socket.connected) {
          reject(new Error("not connected; the conversation opens when the connection is back"));
          return;
        }
        socket.timeout(JOIN_TIMEOUT_MS).emit("conversation:join", user, (error, ack) => {
          if (error) reject(error);
          else if (!ack?.ok) reject(new Error(ack?.error ?? "refused"));
          else resolve(ack.history ?? []);
        });
      });
    },
    /** Leave ``user``'s conversation room. */
    leaveConversation(user) {
      if (conversationUser === user) conversationUser = null;
      if (socket.connected) socket.emit("conversation:leave", user);
    },
    /** Close for good (logout). */
    close() {
      closed = true;
      generation += 1;
      clearRetry();
      unhook();
      socket.disconnect();
      socket.io.off?.("reconnect_attempt");
      socket.io.off?.("reconnect_failed");
      socket.off?.();
      machine.stop(now());
    },
  };
}
