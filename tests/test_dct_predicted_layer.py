"""The predicted transform-domain layer (format 10, kind 4): round trips at odd sizes and extreme
steps (and kind 5's, which is kind 4's over adaptive transforms: tests/test_adaptive_layer.py), refusal of damaged payloads, the size estimate, the integer transform against the float one."""
import numpy as np
import pytest

from cycleapp.core import adaptive_layer as kind5
from cycleapp.core import dct_layer
from cycleapp.core import dct_predicted_layer as kind4

SEAL = 2 ** 40 + 77


def pair(h, w, seed=0):
    """A smooth image with texture and a base that lost contrast and added noise (as the learned one does)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    rgb = np.stack([128 + 60 * np.sin(x / 5 + c) * np.cos(y / 7) for c in range(3)], -1) + rng.normal(0, 8, (h, w, 3))
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    base = np.clip(128 + 0.8 * (rgb.astype(float) - 128) + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)
    return rgb, base


@pytest.mark.parametrize("layer", [kind4, kind5], ids=["kind4", "kind5"])
@pytest.mark.parametrize("h,w", [(1, 1), (1, 9), (7, 13), (16, 16), (40, 33), (3, 130), (45, 61), (70, 40)])
@pytest.mark.parametrize("step", [kind4.MIN_STEP, 77, 512, kind4.MAX_STEP])
def test_round_trip(layer, h, w, step):
    """Kind 4's layer, and kind 5's (`adaptive_layer`: the same over 8x8, 16x16 and 32x32 DCTs)."""
    rgb, base = pair(h, w, h * w)
    payload, pixels = layer.encode_layer(rgb, base, step, SEAL)
    assert np.array_equal(layer.decode_layer(payload, base, step, SEAL), pixels)
    assert len(payload) <= layer.payload_limit(h, w)


def test_escapes_round_trip():
    rgb = np.zeros((16, 24, 3), np.uint8); rgb[::2] = 255
    base = np.full_like(rgb, 128)
    enc = kind4.Encoder(rgb, base)
    assert (np.abs(enc.levels(kind4.MIN_STEP)) >= 255).any()
    payload, pixels = enc.encode(kind4.MIN_STEP, SEAL)
    assert np.array_equal(kind4.decode_layer(payload, base, kind4.MIN_STEP, SEAL), pixels)


def test_better_than_kind2_at_equal_step():
    rgb, base = pair(64, 96)
    for step in (128, 300):
        p2, x2 = dct_layer.encode_layer(rgb, base, step, SEAL)
        p3, x3 = kind4.encode_layer(rgb, base, step, SEAL)
        e2 = np.mean((x2.astype(float) - rgb) ** 2); e3 = np.mean((x3.astype(float) - rgb) ** 2)
        assert e3 <= e2 * 1.01 and len(p3) <= len(p2) * 1.02


@pytest.mark.parametrize("layer", [kind4, kind5], ids=["kind4", "kind5"])
def test_damaged_payload_refused(layer):
    rgb, base = pair(48, 48)
    payload, _ = layer.encode_layer(rgb, base, 200, SEAL)
    with pytest.raises(ValueError):
        layer.decode_layer(payload, base, 200, SEAL + 1)
    with pytest.raises(ValueError):
        layer.decode_layer(payload[:-4], base, 200, SEAL)
    with pytest.raises(ValueError):
        layer.decode_layer(payload + payload, base, 200, SEAL)


def test_size_estimate():
    rgb, base = pair(96, 128)
    enc = kind4.Encoder(rgb, base)
    for step in (64, 256):
        real = len(enc.encode(step, SEAL)[0])
        assert abs(enc.size(step) - real) <= 0.02 * real + 16


def test_integer_transform_matches_float():
    _, base = pair(20, 28)
    exact = kind4.base_coefficients(base) / 2.0 ** kind4.BASE_SHIFT
    assert np.abs(exact - dct_layer.forward(base)).max() < 0.01 * 255


def test_bucket_is_the_bit_length_of_the_energy_over_the_divisor():
    """The looked-up buckets (what the decoder's contexts read) are the rule's, every energy up to
    well beyond the cap (the largest an escape's magnitudes can make)."""
    energy = np.concatenate([np.arange(4 * kind4.ENERGY_CAP), [2 ** 24, 2 ** 31 - 1]]).astype(np.int32)
    rule = np.array([min((int(e) // kind4.ENERGY_DIVISOR).bit_length(), kind4.BUCKETS - 1) for e in energy])
    assert np.array_equal(kind4.bucket(energy), rule)
    assert kind4.bucket(energy.reshape(-1, 2)).shape == (len(energy) // 2, 2)


def test_a_kept_estimate_codes_the_same_file():
    """Rate control estimates a step's size, then codes it from the kept levels and contexts: the
    file is the one a fresh encoder makes."""
    rgb, base = pair(48, 64)
    enc = kind4.Encoder(rgb, base)
    for step in (64, 96, 64, 256):
        enc.size(step)
        (kept, pixels), (fresh, fresh_pixels) = enc.encode(step, SEAL), kind4.Encoder(rgb, base).encode(step, SEAL)
        assert kept == fresh and np.array_equal(pixels, fresh_pixels)
