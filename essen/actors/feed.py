"""Fan-out of processed messages to local subscribers (the SSE stream, the uplink).

A subscriber that cannot keep up is dropped, not buffered without bound: each
has a bounded channel, and a full channel closes that subscriber (counted).
"""

from __future__ import annotations

import math
from typing import Generic, TypeVar

import trio

__all__ = ("FeedHub",)

T = TypeVar("T")


class FeedHub(Generic[T]):
    def __init__(self, *, per_subscriber: int = 256, max_subscribers: int = 64) -> None:
        self.per_subscriber = per_subscriber
        self.max_subscribers = max_subscribers
        self._subscribers: set[trio.MemorySendChannel[T]] = set()
        self.dropped_subscribers = 0
        self.published = 0

    def subscribe(self) -> trio.MemoryReceiveChannel[T]:
        """A channel of what is published from now on; closed if the reader falls behind.

        Raises:
            OverflowError: already ``max_subscribers`` subscribers.
        """
        self._forget_departed()
        if len(self._subscribers) >= self.max_subscribers:
            raise OverflowError("too many subscribers")
        send, receive = trio.open_memory_channel[T](self.per_subscriber)
        self._subscribers.add(send)
        return receive

    def publish(self, item: T) -> None:
        self.published += 1
        for send in list(self._subscribers):
            try:
                send.send_nowait(item)
            except trio.WouldBlock:
                self._subscribers.discard(send)
                self.dropped_subscribers += 1
                send.close()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(send)

    def _forget_departed(self) -> None:
        """Free the places of readers that closed their end (not only at the next publish)."""
        for send in list(self._subscribers):
            if send.statistics().open_receive_channels == 0:
                self._subscribers.discard(send)
                send.close()

    @property
    def subscribers(self) -> int:
        self._forget_departed()
        return len(self._subscribers)

    def statistics(self) -> dict[str, float]:
        return {
            "subscribers": len(self._subscribers),
            "dropped_subscribers": self.dropped_subscribers,
            "published": self.published,
            "per_subscriber": self.per_subscriber if self.per_subscriber else math.inf,
        }
