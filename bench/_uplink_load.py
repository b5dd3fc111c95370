"""A bot's uplink without the bot: ``message:processed`` batches at a fixed rate.

``bench/cluster_fanout.py`` needs load that enters the admin API exactly as a bot's does
(the service CONNECT, the ``MessageBatch`` contract, the uplink's batching) but at a
rate it sets, with the send time of every event known to the µs. A real ``essen bot``
fed by webhooks would add its own CPU, the fake Graph API's and the webhook load
generator's to a 2-core machine that must also carry 1000 dashboards, and it caps at
~83 msg/s by its Send API pacing (bench/README.md, "End to end"). Only the admin side is
under test here, so this process is the bot's uplink and nothing else:

* ESSEN's own Socket.IO client (``essen.realtime.client``, the one ``essen bot``'s uplink
  uses), authenticated as ``{"service": "bot", "secret", "instance"}``, WebSocket only
  (admins with ``REDIS_URL`` accept nothing else);
* event *i* is due at t0 + i/R (open loop); events are batched as the uplink does
  (``essen.actors.uplink``: flushed ``flush_after`` s after the first event of a batch,
  or at ``flush_at`` events), each batch built and validated through
  ``essen.events.MessageBatch`` and emitted without an ack, as the uplink emits it;
* the send time of an event is the moment its batch was handed to the client
  (``time.monotonic_ns``, CLOCK_MONOTONIC, the clock the Node dashboards stamp with).

Event *i* has id ``{tag}-{i:06d}``, direction ``in`` and outcome ``answered``, from one of
``--users`` pseudonymous users (``essen.pseudonym``), with one of the webhook benchmark's
texts as preview. ``PHASE send_start`` / ``PHASE send_end`` go to stderr; one JSON line
(``send_ms`` per event, batches, lag, disconnects, CPU) to stdout at the end.

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

    uplink = UplinkConfig(url="", secret="", instance="")  # the bot's batching defaults
    ap = argparse.ArgumentParser(prog="_uplink_load.py", description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True, help="the admin API's base URL")
    ap.add_argument("--path", default=uplink.path)
    ap.add_argument("--secret", required=True, help="BOT_SERVICE_SECRET")
    ap.add_argument("--instance", default="bench-bot")
    ap.add_argument("--rate", type=float, required=True, help="events per second")
    ap.add_argument("--duration", type=float, required=True, help="seconds of events")
    ap.add_argument("--flush-after", type=float, default=uplink.flush_after)
    ap.add_argument("--flush-at", type=int, default=uplink.flush_at)
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--connect-timeout", type=float, default=20.0)
    ap.add_argument(
        "--linger",
        type=float,
        default=1.0,
        help="seconds to stay connected after the last batch (its frames leave first)",
    )
    args = ap.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or not 1 <= args.flush_at <= 100:
        ap.error("--rate and --duration must be > 0, --flush-at within 1..100")

    import trio
    import webhook as wh  # bench/webhook.py: the benchmark's texts, users and keys

    from essen.events import MessageBatch, MessageProcessed
    from essen.pseudonym import pseudonymize
    from essen.realtime.client import ClientOptions, ClientState, SocketIOClient

    rng = random.Random(args.seed)
    n = max(1, round(args.rate * args.duration))
    key = wh.PSEUDONYM_KEY.encode()
    pseudonyms = [pseudonymize(wh.psid(u), key) for u in range(args.users)]
    users = [pseudonyms[rng.randrange(args.users)] for _ in range(n)]
    send_ms: list[float | None] = [None] * n
    counters = {"batches": 0, "disconnects": 0, "largest_batch": 0}
    lag_max = 0.0

    def batch_of(first: int, end: int) -> dict[str, Any]:
        now = time.time()
        events = tuple(
            MessageProcessed(
                instance=args.instance,
                id=event_id(args.tag, i),
                user=users[i],
                kind="text",
                direction="in",
                preview=wh.TEXTS[i % len(wh.TEXTS)],
                outcome="answered",
                at=now,
                latency_ms=5.0,
            )
            for i in range(first, end)
        )
        return MessageBatch(instance=args.instance, events=events).model_dump(mode="json")

    async def run() -> dict[str, Any]:
        nonlocal lag_max
        client = SocketIOClient(
            args.url,
            ClientOptions(
                path=args.path,
                transports=("websocket",),
                auth={"service": "bot", "secret": args.secret, "instance": args.instance},
                connect_timeout=args.connect_timeout,
            ),
        )
        was_connected = False

        def on_status(status: Any) -> None:
            nonlocal was_connected
            if status.state is ClientState.CONNECTED:
                was_connected = True
            elif was_connected and not client.closing:  # our own aclose() is no loss
                was_connected = False
                counters["disconnects"] += 1
                sys.stderr.write(f"uplink lost: {status.state.name} {status.reason}\n")

        client.on_status(on_status)
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            with trio.fail_after(args.connect_timeout):
                await client.wait_connected()
            ru0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = trio.current_time() + 0.05
            sys.stderr.write("PHASE send_start\n")
            sys.stderr.flush()
            i = 0
            while i < n:
                # The uplink flushes flush_after s after the first event of a batch, or as
                # soon as it holds flush_at events.
                due_first = t0 + i / args.rate
                flush_at = due_first + args.flush_after
                end = i + 1
                while end < n and end - i < args.flush_at and t0 + end / args.rate <= flush_at:
                    end += 1
                at = flush_at if end - i < args.flush_at else t0 + (end - 1) / args.rate
                await trio.sleep_until(at)
                lag_max = max(lag_max, trio.current_time() - at)
                payload = batch_of(i, end)
                stamp = time.monotonic_ns() / 1e6
                client.emit("message:processed", payload)
                for k in range(i, end):
                    send_ms[k] = stamp
                counters["batches"] += 1
                counters["largest_batch"] = max(counters["largest_batch"], end - i)
                i = end
            send_s = trio.current_time() - t0
            sys.stderr.write("PHASE send_end\n")
            sys.stderr.flush()
            ru1 = resource.getrusage(resource.RUSAGE_SELF)
            await trio.sleep(args.linger)
            buffer_dropped = client.buffer_dropped
            await client.aclose()
            nursery.cancel_scope.cancel()
        return {
            "send_s": send_s,
            "cpu_s": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
            "buffer_dropped": buffer_dropped,
        }

    try:
        timing = trio.run(run)
    except Exception as exc:  # the driver records the reason and goes on
        sys.stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        return 1
    result = {
        "sent": n,
        "send_ms": send_ms,
        "send_lag_max_ms": lag_max * 1000,
        **counters,
        **timing,
    }
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
