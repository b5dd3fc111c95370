/**
 * Service health as data: one row per component, grouped the way an
 * operator thinks about the system, worst first.
 *
 * Component names come from the admin API (``essen/admin/ingest.py``):
 *
 * * ``bot:{instance}``: whether a bot instance is reporting (healthy / stale / down);
 * * ``{instance}:{component}`` (``{instance}/{component}`` in older builds):
 *   what a bot reports about itself (``uplink``, ``graph_api``,
 *   ``event_loop``, ``memory``, ``actors``);
 * * the admin's own: ``store``, ``store:ping``, ``admin:actors``.
 *
 * ``bot:uplink`` is the uplink of an instance *named* ``bot``: a known bot
 * part after the separator wins over the ``bot:`` prefix (but ``store:*``
 * and ``admin:*`` are always the admin's own).
 *
 * The dashboard adds one row of its own, ``admin-api``: whether *this page*
 * reaches the admin API (from the connection state), since nothing else can
 * say so when the admin API is the thing that is down.
 *
 * Rows are keyed by ``component``; ``health:changed`` replaces its row
 * unless it is older (by ``since``) than what the row already shows (a late
 * or replayed event must not undo a newer one).  A subscribe snapshot
 * replaces all rows.
 */

import { isNum } from "./format.js";

export const STATUS_RANK = Object.freeze({ healthy: 0, degraded: 1, stale: 2, down: 3 });
export const STATUS_LABELS = Object.freeze({ healthy: "Healthy", degraded: "Degraded", stale: "Stale", down: "Down" });

/** The dashboard's own row: can this page reach the admin API? */
export const ADMIN_CONNECTION = "admin-api";

export const GROUPS = Object.freeze([
  { id: "instances", label: "Bot instances" },
  { id: "uplinks", label: "Uplinks" },
  { id: "graph", label: "Graph API" },
  { id: "admin", label: "Admin API" },
  { id: "store", label: "Store" },
  { id: "bot-internals", label: "Bot internals" },
  { id: "other", label: "Other" },
]);

const BOT_PARTS = {
  uplink: { group: "uplinks", label: "uplink" },
  graph_api: { group: "graph", label: "Graph API" },
  event_loop: { group: "bot-internals", label: "event loop" },
  memory: { group: "bot-internals", label: "memory" },
  actors: { group: "bot-internals", label: "actors" },
};

/** Which group a component belongs to, and a readable name for it. */
export function categorize(component) {
  const name = String(component ?? "");
  if (name === ADMIN_CONNECTION) return { group: "admin", label: "Admin API (this dashboard's connection)" };
  const cut = name.search(/[:/]/);
  const head = cut > 0 ? name.slice(0, cut) : name;
  const part = cut > 0 ? name.slice(cut + 1) : "";
  // The admin's own components first: "admin:actors" is not a bot called "admin".
  if (head === "store") return { group: "store", label: part === "ping" ? "Store (database ping)" : `Store (${part || "writer"})` };
  if (head === "admin" && part) return { group: "admin", label: `Admin API ${part.replace(/_/g, " ")}` };
  if (head === "redis") return { group: "admin", label: "Redis fan-out" };
  const known = BOT_PARTS[part];
  if (known) return { group: known.group, label: `${head} ${known.label}` };
  if (head === "bot" && part) return { group: "instances", label: `Bot ${part}` };
  if (part) return { group: "bot-internals", label: `${head} ${part.replace(/_/g, " ")}` };
  return { group: "other", label: name };
}

function normalize(entry) {
  if (!entry || typeof entry !== "object" || typeof entry.component !== "string") return null;
  const status = entry.status in STATUS_RANK ? entry.status : "down";
  return {
    component: entry.component,
    status,
    since: isNum(entry.since) ? entry.since : null,
    reason: typeof entry.reason === "string" && entry.reason ? entry.reason : null,
    previous: entry.previous ?? null,
  };
}

export class HealthModel {
  constructor() {
    /** @type {Map<string, {component: string, status: string, since: number|null, reason: string|null}>} */
    this.rows = new Map();
    this.local = null;
    this.version = 0;
  }

  /** Replace every server-reported row (the subscribe snapshot). */
  reset(list) {
    this.rows = new Map();
    for (const entry of list ?? []) {
      const row = normalize(entry);
      if (row) this.rows.set(row.component, row);
    }
    this.version += 1;
  }

  /** Merge rows from the REST endpoint: a row replaces one only if it is not older. */
  merge(list) {
    let changed = false;
    for (const entry of list ?? []) changed = this.apply(entry) || changed;
    return changed;
  }

  /** Apply one ``health:changed``; returns true when a row changed. */
  apply(change) {
    const row = normalize(change);
    if (!row) return false;
    const current = this.rows.get(row.component);
    if (current && isNum(current.since) && isNum(row.since) && row.since < current.since) return false;
    if (current && current.status === row.status && current.reason === row.reason && current.since === row.since) return false;
    this.rows.set(row.component, row);
    this.version += 1;
    return true;
  }

  /** Set the dashboard's own ``admin-api`` row (null removes it). */
  setLocal(row) {
    const next = row ? normalize({ component: ADMIN_CONNECTION, ...row }) : null;
    const prev = this.local;
    if (prev && next && prev.status === next.status && prev.reason === next.reason && prev.since === next.since) return false;
    if (!prev && !next) return false;
    this.local = next;
    this.version += 1;
    return true;
  }

  /** Every row, grouped in {@link GROUPS} order, worst first within a group, then by name. */
  groups() {
    const all = [...this.rows.values()];
    if (this.local) all.push(this.local);
    const byGroup = new Map(GROUPS.map((g) => [g.id, []]));
    for (const row of all) {
      const { group, label } = categorize(row.component);
      byGroup.get(group).push({ ...row, label, group });
    }
    const out = [];
    for (const group of GROUPS) {
      const rows = byGroup.get(group.id);
      if (!rows.length) continue;
      rows.sort((a, b) => STATUS_RANK[b.status] - STATUS_RANK[a.status] || a.component.localeCompare(b.component));
      out.push({ ...group, rows });
    }
    return out;
  }

  /** The overall picture: the worst status, counts per status, and a sentence. */
  summary() {
    const counts = { healthy: 0, degraded: 0, stale: 0, down: 0 };
    let worst = null;
    const all = [...this.rows.values()];
    if (this.local) all.push(this.local);
    for (const row of all) {
      counts[row.status] += 1;
      if (worst === null || STATUS_RANK[row.status] > STATUS_RANK[worst]) worst = row.status;
    }
    const unhealthy = all.length - counts.healthy;
    let text;
    if (!all.length) text = "No components reported yet";
    else if (!unhealthy) text = `All ${all.length} components healthy`;
    else text = `${unhealthy} of ${all.length} components need attention`;
    return { worst: worst ?? "healthy", counts, total: all.length, unhealthy, text };
  }

  clear() {
    this.rows = new Map();
    this.local = null;
    this.version += 1;
  }
}

/**
 * The ``admin-api`` row for a connection state (see connection.js): healthy
 * when live, degraded while (re)connecting, down when offline.  ``sinceSec``
 * is when the connection entered that state, in epoch seconds.
 */
export function connectionHealth(state, sinceSec) {
  switch (state.kind) {
    case "live":
      return { status: "healthy", since: sinceSec, reason: null };
    case "connecting":
    case "syncing":
      return { status: "degraded", since: sinceSec, reason: "connecting to the admin API" };
    case "reconnecting":
      return { status: "down", since: sinceSec, reason: `connection lost${state.error ? ` (${state.error})` : ""}; reconnecting` };
    case "offline":
      return { status: "down", since: sinceSec, reason: state.reason === "network" ? "this browser is offline" : "the admin API cannot be reached" };
    default:
      return null;
  }
}
