"""The fake Graph API (essen.messenger.fake_graph) as its own process, for the bot benchmarks.

    .venv/bin/python bench/servers/fake_graph_server.py --port PORT --token PAGE_TOKEN
        [--host 127.0.0.1] [--page-id ID] [--max-records 200000] [--seed 0]

Serves ``create_fake_graph(...).app`` with ``essen.web.serving.serve_app`` and prints
``READY`` on stdout once listening (``--port 0`` picks a free port; the line is then
``READY http://127.0.0.1:PORT``).  Exits on SIGTERM/SIGINT.

Everything of the fake's own admin API is there (``/_fake/fail``, ``/_fake/latency``,
``/_fake/reset``, ``/_fake/received``).  For the benchmark driver it adds one route:

* ``GET /_bench/summary``: what the fake answered since the last reset, counted, so the
  driver need not download every record (``?quick=1``: only ``total`` and
  ``answers_total``, for polling): ``answers`` (Send API messages answered 200)
  per recipient, ``sender_actions`` per action, ``statuses`` per HTTP status of all
  requests, ``errors`` (non-200), ``me`` (``GET /me`` calls), ``recorded``/``dropped``
  (records kept vs overflowed: counts are exact only while ``dropped`` is 0; raise
  ``--max-records`` if it is not).

Bind it to loopback: the admin routes have no authentication.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import sys
from collections import Counter
from functools import partial
from typing import Any

import trio
from quart import Response, request

from essen.messenger.fake_graph import Endpoint, RecordPolicy, create_fake_graph
from essen.web.serving import serve_app


async def _stop_on_signals(cancel_scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            cancel_scope.cancel()
            return


async def main(args: argparse.Namespace) -> None:
    fake = create_fake_graph(
        page_token=args.token,
        page_id=args.page_id,
        rng=random.Random(args.seed),
        record_policy=RecordPolicy(max_records=args.max_records),
    )

    @fake.app.get("/_bench/summary")
    async def summary() -> Response:
        if request.args.get("quick"):
            # For polling: only how many messages were answered (one pass, no dicts).
            answered = sum(
                1
                for r in fake.received
                if r.status == 200 and r.message is not None and r.endpoint is Endpoint.MESSAGES
            )
            body: dict[str, Any] = {"total": fake.statistics().total, "answers_total": answered}
            return Response(json.dumps(body), 200, content_type="application/json")
        answers: Counter[str] = Counter()
        actions: Counter[str] = Counter()
        statuses: Counter[str] = Counter()
        me = 0
        for record in fake.received:
            statuses[str(record.status)] += 1
            if record.endpoint is Endpoint.ME:
                me += 1
            elif record.status == 200 and record.recipient_id is not None:
                if record.message is not None:
                    answers[record.recipient_id] += 1
                elif record.sender_action is not None:
                    actions[record.sender_action] += 1
        stats = fake.statistics()
        body = {
            "total": stats.total,
            "recorded": stats.recorded,
            "dropped": stats.dropped,
            "injected": stats.injected,
            "latency": stats.latency,
            "me": me,
            "answers_total": sum(answers.values()),
            "answers": dict(answers),
            "sender_actions": dict(actions),
            "statuses": dict(statuses),
            "errors": sum(n for status, n in statuses.items() if status != "200"),
        }
        return Response(json.dumps(body), 200, content_type="application/json")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signals, nursery.cancel_scope)
        urls = await nursery.start(partial(serve_app, fake.app, args.host, args.port))
        print(f"fake_graph_server: {urls[0]} max_records={args.max_records}", file=sys.stderr)
        print(f"READY {urls[0]}" if args.port == 0 else "READY", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True, help="the page access token the fake accepts")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--page-id", default="100000000000001")
    parser.add_argument(
        "--max-records",
        type=int,
        default=200_000,
        help="records kept (oldest dropped beyond); /_bench/summary is exact below this",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds message ids and trace ids")
    logging.basicConfig(level=logging.WARNING)
    trio.run(main, parser.parse_args())
