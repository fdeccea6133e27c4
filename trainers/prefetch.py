"""Reading batches ahead of the training loop, in a background thread."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator

__all__ = ["Prefetcher"]


class Prefetcher:
    """Runs a batch iterator in a background thread, `depth` batches ahead of the consumer.

    Store reads spend their time in codecs and file reads that release the GIL, so they
    overlap with the model's forward and backward. Exceptions re-raise in the consumer.
    """

    _END = object()

    def __init__(self, batches: Iterable, depth: int = 4) -> None:
        self._it = iter(batches)
        self._depth = depth
        if depth <= 0:
            return
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clipfeat-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._it:
                while not self._stop.is_set():
                    try:
                        self._q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._q.put(self._END)
        except BaseException as e:  # handed to the consumer
            self._q.put(e)

    def __iter__(self) -> Iterator:
        if self._depth <= 0:
            yield from self._it
            return
        try:
            while True:
                item = self._q.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()
