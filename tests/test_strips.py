"""Block rows a strip at a time, two at once (`core.strips`): the same numbers as one after another."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from cycleapp.core import adaptive_layer, dct_predicted_layer, predicted_layer, strips

from conftest import EXAMPLES


def test_each_returns_every_strip_s_result_in_order():
    rows = 5 * strips.STRIP + 3
    assert strips.each(rows, lambda s: (s.start, s.stop)) == [(s.start, s.stop) for s in strips.strips(rows)]
    assert strips.each(0, lambda s: 1) == []
    assert strips.each(10, lambda s: (s.start, s.stop), 4) == [(0, 4), (4, 8), (8, 10)]  # rows of any size


def test_a_strip_s_error_is_raised_to_the_caller():
    def work(s):
        if s.start == 2 * strips.STRIP:
            raise ValueError("strip 2")
        return s.start
    with pytest.raises(ValueError, match="strip 2"):
        strips.each(4 * strips.STRIP, work)


def test_within_a_strip_the_work_runs_on_its_own_thread():
    """A strip's work that itself works strip by strip runs those in its own thread (no pool
    within a pool)."""
    seen = []

    def outer(s):
        here = threading.get_ident()
        seen.extend(threading.get_ident() == here for _ in strips.each(3 * strips.STRIP, lambda t: t))
        return here
    threads = strips.each(4 * strips.STRIP, outer)
    assert all(seen) and len(seen) == 4 * 3
    if strips.WORKERS > 1:
        assert threading.get_ident() not in threads


@pytest.mark.parametrize("layer", [adaptive_layer, dct_predicted_layer, predicted_layer])
def test_the_same_file_on_one_thread_or_two(monkeypatch, layer):
    """A transform layer's payload and pixels do not depend on how many strips run at once; nor
    the lossless layer's, whose products run CHUNK rows at a time and whose classes are fitted two
    at once (this crop's finest passes are large enough for both)."""
    assert 200 * 220 // 4 > max(predicted_layer.Features.CHUNK, predicted_layer.CLASS_FROM)
    rgb = np.array(Image.open(EXAMPLES / "kodim23.png").convert("RGB"))[100:300, 200:420]
    base = np.clip(rgb.astype(np.int16) + np.random.default_rng(1).integers(-6, 7, rgb.shape), 0, 255).astype(np.uint8)
    seal = (1 << 32) + 7
    for step in (40, 200):
        made = {}
        for workers in (1, 2):
            monkeypatch.setattr(strips, "WORKERS", workers)
            payload, pixels = layer.encode_layer(rgb, base, step, seal)
            made[workers] = payload, pixels, layer.decode_layer(payload, base, step, seal)
        (one, one_pixels, one_decoded), (two, two_pixels, two_decoded) = made[1], made[2]
        assert one == two and np.array_equal(one_pixels, two_pixels)
        assert np.array_equal(one_decoded, one_pixels) and np.array_equal(two_decoded, one_pixels)
