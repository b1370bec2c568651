"""A bounded queue of messages waiting for the broker, dropping the least valuable first.

While the broker is away an edge keeps publishing; the outbox holds what it can. When full it drops
the oldest *metrics* message first (the next one supersedes it, and the hub sees the hole as a
sequence gap), and only when no metrics are left the oldest message of any kind. Events and status
therefore survive an outage as long as possible. Pure data structure: no I/O, no clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    content_type: str | None = None

    @property
    def kind(self) -> str:
        """The topic's last level (``metrics``, ``events``…): what the drop policy and metrics use."""
        return self.topic.rsplit("/", 1)[-1]


# Dropped first when full; anything else only after these are gone. (Per-frame results never get here:
# the bus drops QoS 0 messages instead of queueing them.)
DROP_FIRST = ("metrics",)


class Outbox:
    def __init__(self, capacity: int, on_drop: Callable[[Message], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError("outbox capacity must be ≥ 1")
        self.capacity = capacity
        self._items: deque[Message] = deque()
        self.dropped: dict[str, int] = {}
        self._on_drop = on_drop

    def drop(self, message: Message) -> None:
        """Count ``message`` as dropped (every drop, queued or never queued, is counted here)."""
        self.dropped[message.kind] = self.dropped.get(message.kind, 0) + 1
        if self._on_drop is not None:
            self._on_drop(message)

    def __len__(self) -> int:
        return len(self._items)

    def push(self, message: Message) -> Message | None:
        """Queue ``message``; return the message dropped to make room, if any."""
        dropped = None
        if len(self._items) >= self.capacity:
            dropped = self._evict(message)
        if dropped is not message:
            self._items.append(message)
        if dropped is not None:
            self.drop(dropped)
        return dropped

    def requeue(self, messages: list[Message]) -> None:
        """Put ``messages`` (older than everything queued, e.g. unacknowledged when the connection
        dropped) back at the front, in order; the drop policy applies if that overfills the box."""
        self._items.extendleft(reversed(messages))
        while len(self._items) > self.capacity:
            self.drop(self._evict(None))

    def _evict(self, incoming: Message | None) -> Message:
        for kind in DROP_FIRST:
            for i, queued in enumerate(self._items):
                if queued.kind == kind:
                    del self._items[i]
                    return queued
            if incoming is not None and incoming.kind == kind:  # nothing queued is less valuable
                return incoming
        return self._items.popleft()

    def pop_all(self) -> list[Message]:
        """Every queued message, oldest first, leaving the outbox empty."""
        items = list(self._items)
        self._items.clear()
        return items
