"""The bounded sample an observed stage keeps of its durations (``_core/telemetry.Reservoir``)."""

from __future__ import annotations

import random

from rxpipe._core.telemetry import SAMPLES, Reservoir


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
