"""The hand-offs between the loop's threads: one stop flag, and one-item slots.

A capture thread puts frames in its stream's slot; the inference thread takes the newest frame of every
stream (``take`` never blocks) and waits on one shared event that every slot sets when it gets a frame, so
one thread can watch many streams without polling each.
"""

from __future__ import annotations

import threading


class Stopper:
    """The one stop flag every thread watches, with the reason it was raised first."""

    def __init__(self):
        self.event = threading.Event()
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)


class SlotClosed(Exception):
    """The slot was closed and is empty: no more items will come."""


class FrameSlot:
    """A one-item hand-off between two threads.

    ``newest_wins``: ``put`` replaces an unread item (counted in ``dropped``) and never blocks.
    Otherwise ``put`` waits until the item was taken (back-pressure: nothing is lost).
    ``ready``: an event set on every put and on close (shared by the slots one consumer watches).
    """

    def __init__(self, newest_wins: bool, ready: threading.Event | None = None):
        self.newest_wins = newest_wins
        self.dropped = 0
        self.ready = ready
        self._item = None
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item) -> bool:
        """Hand over an item; False when the slot was closed (the consumer is gone)."""
        with self._cond:
            if not self.newest_wins:
                while self._item is not None and not self._closed:
                    self._cond.wait(0.1)
            if self._closed:
                return False
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify_all()
        if self.ready is not None:
            self.ready.set()
        return True

    def get(self, timeout: float):
        """The waiting item, or None after ``timeout`` seconds.

        Raises:
            SlotClosed: the slot is closed and empty.
        """
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            if item is None and self._closed:
                raise SlotClosed
            self._cond.notify_all()
            return item

    def take(self):
        """The waiting item or None, without waiting.

        Raises:
            SlotClosed: the slot is closed and empty.
        """
        return self.get(0.0) if self._item is not None or self._closed else None

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """No more puts; a waiting ``get`` returns what is left, then raises ``SlotClosed``."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self.ready is not None:
            self.ready.set()
