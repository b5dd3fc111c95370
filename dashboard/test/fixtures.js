// Shared test data shaped like the admin API's payloads (essen/admin/aggregate.py, essen/events.py).

export const T0 = 1_714_744_800; // 2024-05-03 14:00:00 UTC, a minute (and hour) boundary

export function metrics(overrides = {}) {
  return {
    v: 1,
    messages_per_minute: 40,
    messages_per_minute_previous: 30,
    answered: 38,
    failed: 2,
    error_rate: 0.05,
    latency_p50_ms: 40,
    latency_p95_ms: 180,
    latency_p99_ms: 420,
    active_users: 12,
    active_users_upper_bound: false,
    instances_connected: 2,
    instances_stale: 0,
    instances_down: 0,
    uptime_s: 3725,
    totals: { received: 1000 },
    windows: {},
    send_api: {},
    instances: [],
    series: series(T0 + 59 * 60, (i) => ({ received: i, answered: i, failed: 0 })),
    ...overrides,
  };
}

/** 60 minute buckets ending at the minute containing ``endSec``. */
export function series(endSec, fill = () => ({ received: 0, answered: 0, failed: 0 })) {
  const end = Math.floor(endSec / 60) * 60;
  return Array.from({ length: 60 }, (_, i) => ({ minute: end - (59 - i) * 60, ...fill(i) }));
}

let nextId = 0;
export function message(overrides = {}) {
  nextId += 1;
  return {
    v: 1,
    instance: "bot-1",
    id: `m${nextId}`,
    user: "u_abcdefghij",
    kind: "text",
    direction: "in",
    preview: "hello",
    outcome: "answered",
    at: T0 + nextId,
    latency_ms: 120,
    error_code: null,
    ...overrides,
  };
}
