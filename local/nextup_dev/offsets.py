"""Which offset of a partition may be committed while events finish out of order.

An offset is committed only once every event before it has reached a final outcome
(delivered, dead-lettered, or filtered out): a crash then redelivers what was in flight
and loses nothing. With unordered delivery events finish in any order, so the commit
point is the lowest offset still in flight.
"""

from __future__ import annotations

import heapq


class PartitionOffsets:
    def __init__(self) -> None:
        self._in_flight: set[int] = set()
        self._heap: list[int] = []
        self._next: int | None = None  # one past the highest offset seen
        self._committed: int | None = None

    def started(self, offset: int) -> None:
        if self._next is not None and offset < self._next:
            raise ValueError(f"offset {offset} arrived after {self._next - 1}")
        self._in_flight.add(offset)
        heapq.heappush(self._heap, offset)
        self._next = offset + 1

    def passed(self, offset: int) -> None:
        """An offset that reached its outcome as it arrived (filtered out): only the high
        mark moves, which is all a commit needs from it."""
        if self._next is not None and offset < self._next:
            raise ValueError(f"offset {offset} arrived after {self._next - 1}")
        self._next = offset + 1

    def finished(self, offset: int) -> None:
        self._in_flight.discard(offset)
        while self._heap and self._heap[0] not in self._in_flight:
            heapq.heappop(self._heap)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def committable(self) -> int | None:
        """The offset to commit (the next one to read after a restart), if it moved on."""
        if self._next is None:
            return None
        position = self._heap[0] if self._heap else self._next
        if self._committed is not None and position <= self._committed:
            return None
        return position

    def committed(self, offset: int) -> None:
        self._committed = max(offset, self._committed or 0)
