"""What an observed stage measures (``_core/telemetry``): the bounded sample of its durations,
and the stride at which a fast stage's items are timed."""

from __future__ import annotations

import random

import pytest

from rxpipe._core.telemetry import (
    MAX_STRIDE,
    SAMPLES,
    TIME_EVERY_ITEM_FROM,
    Reservoir,
    StageTiming,
)


def test_it_keeps_everything_up_to_its_size() -> None:
    r = Reservoir()
    for i in range(SAMPLES):
        r.offer(float(i))
    assert r.samples == [float(i) for i in range(SAMPLES)]
    assert r.seen == SAMPLES


def test_past_its_size_it_keeps_a_uniform_sample_of_everything_offered() -> None:
    """Offer 0 .. 5 * SAMPLES - 1: each fifth of the stream holds about a fifth of the sample
    (the skip counts of Algorithm L must neither favour the first items nor the last)."""
    random.seed(12345)
    n = 5 * SAMPLES
    r = Reservoir()
    for i in range(n):
        r.offer(float(i))
    assert len(r.samples) == SAMPLES
    assert r.seen == n
    assert len(set(r.samples)) == SAMPLES  # no item kept twice
    fifths = [0] * 5
    for x in r.samples:
        fifths[int(x) * 5 // n] += 1
    # expected SAMPLES / 5 = 4000 each; a binomial's sd is about 57: allow 7 sd
    assert all(abs(count - SAMPLES / 5) < 400 for count in fifths), fifths
    replaced = sum(1 for x in r.samples if x >= SAMPLES)
    assert abs(replaced - SAMPLES * 4 / 5) < 400, replaced


def _run(timing: StageTiming, items: int, seconds: float) -> int:
    """Items through the caller's protocol: skip while ``skip``, else time one. Returns how
    many were timed."""
    timed = 0
    for _ in range(items):
        if timing.skip:
            timing.skip -= 1
        else:
            timing.item(seconds)
            timed += 1
    return timed


def test_a_slow_stage_has_every_item_timed() -> None:
    timing = StageTiming(keep=True)
    assert _run(timing, 1_000, 50e-6) == 1_000
    assert timing.busy == pytest.approx(1_000 * 50e-6)
    assert timing.timed_items == 1_000


def test_a_fast_stage_is_timed_one_in_a_stride_and_its_busy_time_is_estimated() -> None:
    """0.1 us items: about one in MAX_STRIDE is timed; each stands for itself and the items
    skipped before it, so busy time estimates the whole (items that did not happen after the
    last timed one are never counted)."""
    random.seed(7)
    timing = StageTiming(keep=True)
    n = 400_000
    timed = _run(timing, n, 0.1e-6)
    assert n / MAX_STRIDE * 0.9 < timed < n / MAX_STRIDE * 1.1 + 128  # first 128: all timed
    assert abs(timing.busy - n * 0.1e-6) < 0.03 * n * 0.1e-6
    assert timing.timed_items == timed


def test_a_stage_between_is_timed_at_the_stride_that_bounds_the_stopwatch() -> None:
    """2 us items: one in 10 (TIME_EVERY_ITEM_FROM / 2 us) is timed, not one in MAX_STRIDE."""
    timing = StageTiming(keep=False)
    _run(timing, 10_000, 2e-6)
    assert timing._stride == round(TIME_EVERY_ITEM_FROM / 2e-6)


def test_the_stride_follows_the_stage_when_it_slows_down() -> None:
    timing = StageTiming(keep=False)
    _run(timing, 10_000, 0.1e-6)
    assert timing._stride == MAX_STRIDE
    _run(timing, 10_000, 1e-3)  # it became slow: every item timed again
    assert timing._stride == 1
    assert timing.skip == 0
