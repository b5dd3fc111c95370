"""A bot's uplink without the rest of the bot: ``message:processed`` at a fixed rate.

``bench/cluster_fanout.py`` needs load that enters the admin API exactly as a bot's does
(the service CONNECT, the ``MessageBatch`` contract, the uplink's batching and acks) but
at a rate it sets, with the send time of every event known to the µs. A real
``essen bot`` fed by webhooks would add its own CPU, the fake Graph API's and the webhook
load generator's to a 2-core machine that must also carry 1000 dashboards, and it caps
at ~83 msg/s by its Send API pacing (bench/README.md, "End to end"). Only the admin side
is under test here, so this process runs the bot's uplink actor and nothing else:

* ``essen.actors.uplink.run`` itself, unchanged: ESSEN's Socket.IO client authenticated
  as ``{"service": "bot", "secret", "instance"}`` (WebSocket only: admins with
  ``REDIS_URL`` accept nothing else), batches flushed ``flush_after`` s after their
  first event or at ``flush_at`` events, each sent with an ack and the next one only
  once the previous is acknowledged (at least once, in order);
* event *i* enters the uplink's inbox at t0 + i/R (open loop), as the bot's pipeline
  would hand it over once a message is answered;
* an event's *send time* is the moment the uplink hands its batch to the client
  (``SocketIOClient.call``, wrapped on this one instance to take the stamp), on
  CLOCK_MONOTONIC (``time.monotonic_ns``), the clock the Node dashboards stamp with;
  its *creation time* is when it entered the inbox (so the driver can also show what
  batching and waiting for acks add).

Event *i* has id ``{tag}-{i:06d}``, direction ``in`` and outcome ``answered``, from one of
``--users`` pseudonymous users (``essen.pseudonym``), with one of the webhook benchmark's
texts as preview. ``PHASE send_start`` / ``PHASE send_end`` go to stderr; one JSON line
(``send_ms`` and ``created_ms`` per event, the uplink's counters, CPU) to stdout at the end.

    .venv/bin/python bench/_uplink_load.py --url http://127.0.0.1:PORT --secret S \\
        --rate 50 --duration 10 --tag run1
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from typing import Any

__all__ = ("event_id", "main")


def event_id(tag: str, i: int) -> str:
    """The id of the run's i-th event (the driver writes the same list for the dashboards)."""
    return f"{tag}-{i:06d}"


def main(argv: list[str] | None = None) -> int:
    """Connect, send ``round(rate * duration)`` events, print the result line; 0 if all sent."""
    from essen.actors.uplink import UplinkConfig

    defaults = UplinkConfig(url="", secret="", instance="")  # the bot's own settings
    ap = argparse.ArgumentParser(prog="_uplink_load.py", description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True, help="the admin API's base URL")
    ap.add_argument("--path", default=defaults.path)
    ap.add_argument("--secret", required=True, help="BOT_SERVICE_SECRET")
    ap.add_argument("--instance", default="bench-bot")
    ap.add_argument("--rate", type=float, required=True, help="events per second")
    ap.add_argument("--duration", type=float, required=True, help="seconds of events")
    ap.add_argument("--flush-after", type=float, default=defaults.flush_after)
    ap.add_argument("--flush-at", type=int, default=defaults.flush_at)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--connect-timeout", type=float, default=20.0)
    ap.add_argument(
        "--ack-wait",
        type=float,
        default=60.0,
        help="after the last event, seconds allowed for every batch to be acknowledged",
    )
    args = ap.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or not 1 <= args.flush_at <= 100:
        ap.error("--rate and --duration must be > 0, --flush-at within 1..100")

    from functools import partial

    import trio
    import webhook as wh  # bench/webhook.py: the benchmark's texts, users and keys

    from essen.actors import uplink
    from essen.events import MessageProcessed, MetricsSnapshot
    from essen.pseudonym import pseudonymize
    from essen.realtime.client import ClientState

    rng = random.Random(args.seed)
    n = max(1, round(args.rate * args.duration))
    key = wh.PSEUDONYM_KEY.encode()
    pseudonyms = [pseudonymize(wh.psid(u), key) for u in range(args.users)]
    users = [pseudonyms[rng.randrange(args.users)] for _ in range(n)]
    index = {event_id(args.tag, i): i for i in range(n)}
    send_ms: list[float | None] = [None] * n
    created_ms: list[float | None] = [None] * n
    counters = {"calls": 0, "stamped": 0, "disconnects": 0, "largest_batch": 0}
    config = uplink.UplinkConfig(
        url=args.url,
        secret=args.secret,
        instance=args.instance,
        path=args.path,
        transports=("websocket",),
        flush_at=args.flush_at,
        flush_after=args.flush_after,
    )
    stats = uplink.UplinkStats()
    lag_max = 0.0

    def event(i: int) -> MessageProcessed:
        return MessageProcessed(
            instance=args.instance,
            id=event_id(args.tag, i),
            user=users[i],
            kind="text",
            direction="in",
            preview=wh.TEXTS[i % len(wh.TEXTS)],
            outcome="answered",
            at=time.time(),
            latency_ms=5.0,
        )

    async def no_metrics() -> MetricsSnapshot:
        # The admin never asks (no metrics:request in essen/admin); metrics are not measured.
        raise RuntimeError("the uplink stand-in has no metrics")

    def on_status(status: Any) -> None:
        if status.state is ClientState.RECONNECTING:
            counters["disconnects"] += 1
            sys.stderr.write(f"uplink lost: {status.reason}\n")

    async def run() -> dict[str, Any]:
        nonlocal lag_max
        inbox_send, inbox_receive = trio.open_memory_channel[uplink.UplinkItem](10_000)
        all_sent = trio.Event()
        async with trio.open_nursery() as nursery:
            client = await nursery.start(
                partial(
                    uplink.run,
                    inbox_receive,
                    config=config,
                    request_metrics=no_metrics,
                    on_status=on_status,
                    stats=stats,
                )
            )
            # The stamp is taken where the uplink hands a batch to its client; the call
            # itself is the client's own.
            call = client.call

            async def stamped_call(name: str, *payload: Any) -> list[Any]:
                if name == "message:processed":
                    stamp = time.monotonic_ns() / 1e6
                    events = payload[0]["events"]
                    counters["calls"] += 1
                    counters["largest_batch"] = max(counters["largest_batch"], len(events))
                    for item in events:
                        k = index.get(item["id"])
                        if k is not None and send_ms[k] is None:
                            send_ms[k] = stamp
                            counters["stamped"] += 1
                    if counters["stamped"] == n:
                        all_sent.set()
                return await call(name, *payload)

            client.call = stamped_call  # type: ignore[method-assign]
            with trio.fail_after(args.connect_timeout):
                await client.wait_connected()
            ru0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = trio.current_time() + 0.05
            sys.stderr.write("PHASE send_start\n")
            sys.stderr.flush()
            async with inbox_send:
                for i in range(n):
                    at = t0 + i / args.rate
                    await trio.sleep_until(at)
                    lag_max = max(lag_max, trio.current_time() - at)
                    created_ms[i] = time.monotonic_ns() / 1e6
                    inbox_send.send_nowait(event(i))
                # the last batch leaves flush_after s after its first event, once the
                # batches before it are acknowledged
                with trio.move_on_after(args.ack_wait):
                    await all_sent.wait()
                sys.stderr.write("PHASE send_end\n")
                sys.stderr.flush()
                send_s = trio.current_time() - t0
                ru1 = resource.getrusage(resource.RUSAGE_SELF)
            # Closing the inbox ends the uplink: it waits up to 2 s for outstanding acks.
        return {
            "send_s": send_s,
            "cpu_s": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
            "buffer_dropped": client.buffer_dropped,
        }

    try:
        timing = trio.run(run)
    except Exception as exc:  # the driver records the reason and goes on
        sys.stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        return 1
    result = {
        "sent": n,
        "unsent": n - counters["stamped"],
        "send_ms": send_ms,
        "created_ms": created_ms,
        "send_lag_max_ms": lag_max * 1000,
        **counters,
        "uplink": {
            "batches": stats.batches,
            "events": stats.events,
            "resent": stats.resent,
            "dropped_batches": stats.dropped_batches,
            "dropped_events": stats.dropped_events,
        },
        **timing,
    }
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
