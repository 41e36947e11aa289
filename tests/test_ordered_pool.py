"""Entries decode side by side but come back in archive order, failures included, within a memory (activation) budget."""

from __future__ import annotations

import threading
import time

import pytest

from imgarc.ordered_pool import Task, in_order


class Concurrency:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = 0

    def task(self, value: int, seconds: float):
        def run() -> int:
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
            time.sleep(seconds)
            with self.lock:
                self.now -= 1
            if value < 0:
                raise ValueError(f"entry {value} is damaged")
            return value * 10

        return run


@pytest.mark.parametrize("workers", [1, 3])
def test_results_and_failures_come_back_in_order(workers):
    c = Concurrency()
    values = [5, 4, -3, 2, 1, 0]  # the early ones are slowest: finishing order is the reverse
    tasks = [Task(v, c.task(v, 0.02 * v if v > 0 else 0)) for v in values]
    got = []
    for key, future in in_order(tasks, workers):
        try:
            got.append((key, future.result()))
        except ValueError as e:
            got.append((key, str(e)))
    assert got == [(5, 50), (4, 40), (-3, "entry -3 is damaged"), (2, 20), (1, 10), (0, 0)]
    assert c.peak == workers


def test_photos_over_the_activation_budget_decode_one_at_a_time():
    c = Concurrency()
    tasks = [Task(i, c.task(i, 0.05), activations=600) for i in range(4)]
    assert [f.result() for _, f in in_order(tasks, workers=4, activation_budget=1000)] == [0, 10, 20, 30]
    assert c.peak == 1
    small = [Task(i, c.task(i, 0.05), activations=300) for i in range(6)]
    c.peak = 0
    assert [f.result() for _, f in in_order(small, workers=4, activation_budget=1000)] == [0, 10, 20, 30, 40, 50]
    assert c.peak == 3  # 3 × 300 fit in 1000, a fourth does not


def test_a_caller_that_stops_early_cancels_what_was_queued():
    started = []
    tasks = [Task(i, lambda i=i: started.append(i) or time.sleep(0.05)) for i in range(20)]
    for key, future in in_order(tasks, workers=2):
        future.result()
        if key == 1:
            break
    time.sleep(0.3)
    assert len(started) <= 5  # the two running plus at most what was queued, never all 20
