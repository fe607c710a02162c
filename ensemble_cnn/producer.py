"""Advancing several batch streams at once in background threads.

A fused step needs one freshly distorted batch per member. Made one after another in
one thread, K batches can take longer than the step itself on a GPU. :func:`zip_in_threads`
advances the members' streams in ``threads`` background threads (numpy and scipy
release the GIL in the heavy work), a few batches ahead, and yields exactly what
``zip(*streams)`` would: each stream is still advanced by one thread, in order, so the
batches and their random draws do not depend on the thread count.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Iterator, Sequence

_END = object()
# How often a blocked producer checks whether the consumer has gone away, in seconds.
_POLL_S = 0.1


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def zip_in_threads(streams: Sequence[Iterator[Any]], *, threads: int, depth: int = 4) -> Iterator[tuple]:
    """``zip(*streams)``, with the streams advanced in background threads.

    Parameters
    ----------
    streams : sequence of iterator
        K iterators (e.g. the members' batch streams). Stream ``k`` is advanced only by
        thread ``k % threads``, in order.
    threads : int
        Background threads; ``<= 1`` (or a single stream) is plain ``zip`` in the
        calling thread.
    depth : int
        Items each stream may run ahead of the consumer.

    Yields
    ------
    tuple
        The streams' next items, one from each, until the shortest ends.

    Raises
    ------
    Exception
        Whatever a stream raised, re-raised in the consumer when its turn comes.
    """
    streams = list(streams)
    if threads <= 1 or len(streams) <= 1:
        yield from zip(*streams)
        return
    queues = [queue.Queue(maxsize=max(1, depth)) for _ in streams]
    stop = threading.Event()

    def put(position: int, item: Any) -> bool:
        while not stop.is_set():
            try:
                queues[position].put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce(positions: list[int]) -> None:
        live = list(positions)
        while live and not stop.is_set():
            for position in list(live):
                try:
                    item = next(streams[position])
                except StopIteration:
                    item = _END
                except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                    item = _Failure(exc)
                if not put(position, item):
                    return
                if item is _END or isinstance(item, _Failure):
                    live.remove(position)

    n_threads = min(threads, len(streams))
    workers = [
        threading.Thread(target=produce, args=(list(range(t, len(streams), n_threads)),),
                         name=f"batch-producer-{t}", daemon=True)
        for t in range(n_threads)
    ]
    for worker in workers:
        worker.start()
    try:
        while True:
            items = []
            for q in queues:
                item = q.get()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                items.append(item)
            yield tuple(items)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10 * _POLL_S)
