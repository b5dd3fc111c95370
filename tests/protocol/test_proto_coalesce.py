"""Coalescing: a slow client gets the latest metrics, never a backlog of stale ones."""

from essen.protocol.engine_server import EngineConfig, Outgoing, ServerSession, Transport


def session() -> ServerSession:
    return ServerSession("s", EngineConfig(), transport=Transport.POLLING, now=0.0)


def metrics(n: int) -> Outgoing:
    return Outgoing.message((f'2["metrics:update",{{"n":{n}}}]',), droppable=True, coalesce="m")


def test_latest_queued_metrics_replaces_the_older_one() -> None:
    s = session()
    s.send(Outgoing.message(('2["feed",1]',)))
    s.send(metrics(1))
    s.send(Outgoing.message(('2["feed",2]',)))
    s.send(metrics(2))
    s.send(metrics(3))
    assert s.drain_for_polling().split("\x1e") == [
        '42["feed",1]',
        '42["feed",2]',
        '42["metrics:update",{"n":3}]',
    ]
    assert s.coalesced == 2
    assert s.statistics()["queued_packets"] == 0


def test_coalescing_only_replaces_what_is_still_queued() -> None:
    s = session()
    s.send(metrics(1))
    assert s.drain_for_polling() == '42["metrics:update",{"n":1}]'
    s.send(metrics(2))
    assert s.drain_for_polling() == '42["metrics:update",{"n":2}]'
    assert s.coalesced == 0
