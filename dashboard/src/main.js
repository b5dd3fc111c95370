/**
 * The dashboard's entry point: wires the pure models (``lib/``) to the DOM
 * (``ui/``), the admin API (REST) and Socket.IO.
 *
 * Flow: a stored, unexpired token opens the dashboard at once (and is
 * checked with ``GET /auth/me``); otherwise the login.  The dashboard
 * connects, subscribes, renders the snapshot and then live events.  Any
 * sign that the token is no longer good (a refused connection,
 * ``auth:expired``, a 401, or its ``expires_at`` passing) returns to the
 * login with a message.
 */

import "uplot/dist/uPlot.min.css";
import "./styles.css";

import { io } from "socket.io-client";

import { createApi, sessionEndedMessage } from "./lib/api.js";
import { resolveConfig } from "./lib/config.js";
import { ConnectionMachine } from "./lib/connection.js";
import { formatClock } from "./lib/format.js";
import { connectionHealth } from "./lib/health.js";
import { createRealtime } from "./lib/realtime.js";
import { RANGES, hourlyWindow } from "./lib/series.js";
import { SessionStore, isExpired } from "./lib/session.js";
import { DashboardState } from "./lib/state.js";
import { createCards } from "./ui/cards.js";
import { createChart } from "./ui/chart.js";
import { createConnectionView } from "./ui/connection.js";
import { createConversationView } from "./ui/conversation.js";
import { byId, setAttr, setText } from "./ui/dom.js";
import { createFeedView } from "./ui/feed.js";
import { createHealthView } from "./ui/health.js";
import { createLoginView } from "./ui/login.js";

const HEALTH_DETAILS_MS = 30_000;
const HISTORY_REFRESH_MS = 60_000;

const { config, warnings } = resolveConfig(window.ESSEN_CONFIG, window.location);
for (const warning of warnings) console.warn(`[essen] ${warning}`);

function tabStorage() {
  try {
    const storage = window.sessionStorage;
    storage.getItem("essen.probe");
    return storage;
  } catch {
    return null;
  }
}

const sessions = new SessionStore(tabStorage());
let session = null;
let realtime = null;
const machine = new ConnectionMachine(Date.now());
const state = new DashboardState({ feedLimit: config.feedLimit });

const api = createApi({
  apiBase: config.apiBase,
  getToken: () => session?.token ?? null,
  onUnauthorized: (code) => endSession(code),
});

// -- views -----------------------------------------------------------------

const dashboardView = byId("dashboard-view");
const metricsSection = byId("metrics");
const metricsFreshness = byId("metrics-freshness");
const activityStatus = byId("activity-status");
const accountName = byId("account-name");

const login = createLoginView({
  async login(username, password) {
    const result = await api.login(username, password);
    session = sessions.save(result);
    openDashboard({ focus: true });
  },
});

const cards = createCards(metricsSection);
const health = createHealthView({ groupsEl: byId("health-groups"), summaryEl: byId("health-summary"), detailsEl: byId("health-details") });
const chart = createChart({
  container: byId("activity-chart"),
  summaryEl: byId("activity-summary"),
  tableBody: byId("activity-table").querySelector("tbody"),
  details: byId("activity").querySelector("details"),
});
const connectionView = createConnectionView({ onRetry: () => realtime?.retryNow() });
const conversation = createConversationView({
  onClose(user) {
    state.closeConversation();
    realtime?.leaveConversation(user);
  },
});
const feed = createFeedView({
  list: byId("feed-list"),
  empty: byId("feed-empty"),
  status: byId("feed-status"),
  pauseButton: byId("feed-pause"),
  typeSelect: byId("feed-type"),
  directionSelect: byId("feed-direction"),
  outcomeSelect: byId("feed-outcome"),
  model: state.feed,
  onUser: openConversation,
  onChange: scheduleRender,
});

// -- rendering ----------------------------------------------------------------

let frame = 0;
let renderedActivity = -1;
let range = "60m";
let history = null; // {range, buckets, fetchedAt, error}

function scheduleRender() {
  if (!frame) frame = requestAnimationFrame(render);
}

function render() {
  frame = 0;
  const now = Date.now();
  const live = machine.isLive;
  connectionView.render(machine.state, now);

  setAttr(metricsSection, "data-live", live ? "true" : "false");
  cards.render(state.cards(now));
  if (!state.metricsAt) setText(metricsFreshness, live ? "No metrics yet" : "Waiting for data");
  else if (live) setText(metricsFreshness, `Live \u00B7 updated ${formatClock(state.metricsAt / 1000)}`);
  else setText(metricsFreshness, `Not live \u2014 last known values from ${formatClock(state.metricsAt / 1000)}`);

  health.render(state.health, now / 1000);
  feed.render();
  if (state.conversation) conversation.render(state.conversation);

  if (range === "60m") {
    if (state.activity.version !== renderedActivity) {
      renderedActivity = state.activity.version;
      chart.show(state.activity.buckets, "60m");
    }
    setText(activityStatus, live ? "Per minute \u00B7 live" : "Per minute \u00B7 not live");
  } else if (history?.range === range) {
    setText(
      activityStatus,
      history.error
        ? `Could not load the ${range} history: ${history.error}`
        : `Per hour \u00B7 from stored rollups \u00B7 updated ${formatClock(history.fetchedAt / 1000)}`,
    );
  } else {
    setText(activityStatus, "Loading\u2026");
  }
}

// -- activity range -------------------------------------------------------------

let historyTimer = 0;

async function loadHistory(wanted) {
  try {
    const response = await api.history(wanted);
    if (range !== wanted) return;
    const buckets = hourlyWindow(response?.hours ?? [], RANGES[wanted].hours, Date.now() / 1000);
    history = { range: wanted, buckets, fetchedAt: Date.now(), error: null };
    chart.show(buckets, wanted);
  } catch (error) {
    if (range !== wanted) return;
    history = { range: wanted, buckets: history?.range === wanted ? history.buckets : [], fetchedAt: Date.now(), error: error.code ?? error.message };
  }
  scheduleRender();
}

function selectRange(wanted) {
  range = wanted;
  clearInterval(historyTimer);
  historyTimer = 0;
  if (wanted === "60m") {
    renderedActivity = -1;
  } else {
    if (history?.range === wanted) chart.show(history.buckets, wanted);
    loadHistory(wanted);
    historyTimer = setInterval(() => loadHistory(wanted), HISTORY_REFRESH_MS);
  }
  scheduleRender();
}

for (const radio of document.querySelectorAll('input[name="range"]')) {
  radio.addEventListener("change", () => {
    if (radio.checked) selectRange(radio.value);
  });
}

// -- health details (REST) ----------------------------------------------------------

let detailsTimer = 0;

async function refreshHealthDetails() {
  try {
    const details = await api.healthComprehensive();
    state.health.merge(details?.components ?? []);
    health.renderDetails(details);
    scheduleRender();
  } catch {
    // The socket's health rows still stand; details come back next time.
  }
}

// -- conversation ----------------------------------------------------------------

function openConversation(user) {
  const trigger = document.activeElement;
  const model = state.openConversation(user);
  conversation.show(user, trigger);
  conversation.render(model);
  if (!realtime) return;
  realtime
    .joinConversation(user)
    .then((items) => {
      if (state.conversation !== model) return;
      model.reset(items);
      conversation.setStatus(model.items.length ? "" : "No messages from this user yet.");
      scheduleRender();
    })
    .catch((error) => {
      if (state.conversation === model) conversation.setStatus(`Could not load the history: ${error.message}`);
    });
}

// -- connection -----------------------------------------------------------------------

machine.subscribe((next, previous) => {
  state.health.setLocal(connectionHealth(next, next.since / 1000));
  if (next.kind === "live" && previous.kind !== "live") {
    refreshHealthDetails();
    if (range !== "60m") loadHistory(range);
  }
  scheduleRender();
});

window.addEventListener("offline", () => machine.browserWentOffline(Date.now()));
window.addEventListener("online", () => {
  machine.browserWentOnline(Date.now());
  realtime?.retryNow();
});

function connect() {
  realtime = createRealtime({
    io,
    config,
    getToken: () => session?.token ?? null,
    machine,
    handlers: {
      snapshot(snapshot) {
        state.applySnapshot(snapshot, Date.now());
        scheduleRender();
      },
      metrics(metrics) {
        state.applyMetrics(metrics, Date.now());
        scheduleRender();
      },
      message(event) {
        if (state.applyMessage(event) || state.feed.paused) scheduleRender();
      },
      health(change) {
        if (state.applyHealth(change)) scheduleRender();
      },
      conversation(user, items) {
        if (state.conversation?.user === user) {
          state.conversation.reset(items);
          scheduleRender();
        }
      },
      sessionEnded(reason) {
        endSession(reason);
      },
    },
  });
  realtime.start();
  if (typeof navigator !== "undefined" && navigator.onLine === false) machine.browserWentOffline(Date.now());
}

// -- session ----------------------------------------------------------------------------

let ticker = 0;

function tick() {
  const now = Date.now();
  if (session && isExpired(session, now / 1000)) {
    endSession("expired");
    return;
  }
  state.tick(now);
  scheduleRender();
}

function openDashboard({ focus = false } = {}) {
  login.hide();
  dashboardView.hidden = false;
  setText(accountName, session.username);
  state.clear();
  renderedActivity = -1;
  connect();
  clearInterval(ticker);
  ticker = setInterval(tick, 1000);
  clearInterval(detailsTimer);
  detailsTimer = setInterval(() => {
    if (machine.isLive) refreshHealthDetails();
  }, HEALTH_DETAILS_MS);
  if (focus) byId("page-title").focus();
  scheduleRender();
}

function closeDashboard() {
  clearInterval(ticker);
  clearInterval(detailsTimer);
  clearInterval(historyTimer);
  ticker = detailsTimer = historyTimer = 0;
  conversation.close();
  realtime?.close();
  realtime = null;
  state.clear();
  health.renderDetails(null);
  dashboardView.hidden = true;
}

/** Back to the login with a message saying why (``reason``: expired, revoked, logout...). */
function endSession(reason) {
  if (!session) return;
  session = null;
  sessions.clear();
  closeDashboard();
  login.show(sessionEndedMessage(reason), reason === "logout" ? "info" : "warning");
}

byId("logout-button").addEventListener("click", async () => {
  const ending = session;
  if (!ending) return;
  const logoutApi = createApi({ apiBase: config.apiBase, getToken: () => ending.token });
  endSession("logout");
  try {
    await logoutApi.logout();
  } catch {
    // The token expires anyway; the tab has forgotten it.
  }
});

// -- start ------------------------------------------------------------------------------

session = sessions.load(Date.now() / 1000);
if (session) {
  openDashboard();
  // A stored token may have been revoked; a 401 here ends the session.
  api.me().catch(() => {});
} else {
  login.show();
}
