"""Batch streams advanced in background threads: the same items as zip, errors passed on, threads ended."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ensemble_cnn.producer import zip_in_threads


def random_stream(seed: int, length: int):
    """Items that depend on the order of draws from one generator (as a member's batch stream does)."""
    rng = np.random.default_rng(seed)
    for _ in range(length):
        yield rng.integers(0, 256, size=(8, 28, 28), dtype=np.uint8)


def producer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("batch-producer")]


@pytest.mark.parametrize("threads", [1, 2, 3, 5, 8])
def test_same_items_as_zip(threads):
    expected = list(zip(*(random_stream(seed, 25) for seed in range(5))))
    got = list(zip_in_threads([random_stream(seed, 25) for seed in range(5)], threads=threads, depth=2))
    assert len(got) == len(expected) == 25
    for want, have in zip(expected, got):
        assert all(np.array_equal(a, b) for a, b in zip(want, have))
    time.sleep(0.05)
    assert not producer_threads()


def test_stops_with_the_shortest_stream():
    streams = [iter(range(10)), iter(range(3)), iter(range(7))]
    assert list(zip_in_threads(streams, threads=3)) == [(0, 0, 0), (1, 1, 1), (2, 2, 2)]


def test_error_in_a_stream_reaches_the_consumer_in_turn():
    def failing():
        yield "a"
        yield "b"
        raise ValueError("stream 1 broke")

    consumed = []
    with pytest.raises(ValueError, match="stream 1 broke"):
        for items in zip_in_threads([iter("xyz"), failing(), iter("pqr")], threads=2):
            consumed.append(items)
    assert consumed == [("x", "a", "p"), ("y", "b", "q")]
    time.sleep(0.3)
    assert not producer_threads()


def test_closing_early_ends_the_threads():
    def endless(value):
        while True:
            yield value

    stream = zip_in_threads([endless(i) for i in range(4)], threads=4, depth=3)
    assert next(stream) == (0, 1, 2, 3)
    assert len(producer_threads()) == 4
    stream.close()
    assert not producer_threads()


def test_threads_run_at_the_same_time():
    """Two streams whose items each take 0.2 s: with 2 threads 5 steps take ~1 s, not ~2 s."""
    def slow(value):
        for _ in range(5):
            time.sleep(0.2)
            yield value

    start = time.perf_counter()
    assert len(list(zip_in_threads([slow(0), slow(1)], threads=2))) == 5
    assert time.perf_counter() - start < 1.6
