"""The adaptive transform layer (format 11, kind 5): round trips with escapes, the layout and its
flags, hostile flags and lying files, the exact integer transforms, the size estimate, and that the
choice of transforms pays (smaller files than kind 4's at the same step on a photo). Round trips at
odd sizes and extreme steps and damaged payloads: with kind 4's, tests/test_dct_predicted_layer.py."""
import numpy as np
import pytest
from PIL import Image

from cycleapp.core import adaptive_layer as kind5
from cycleapp.core import dct_predicted_layer as kind4
from cycleapp.core.residual import open_layer
from test_dct_predicted_layer import SEAL

import constriction


def test_escapes_round_trip():
    rgb = np.zeros((48, 40, 3), np.uint8)
    rgb[::2] = 255
    base = np.full_like(rgb, 128)
    payload, pixels = kind5.encode_layer(rgb, base, kind5.MIN_STEP, SEAL)
    assert np.array_equal(kind5.decode_layer(payload, base, kind5.MIN_STEP, SEAL), pixels)


def photo(h=192, w=256):
    """A crop of a shipped photo and a base that lost contrast and added noise."""
    from pathlib import Path
    rgb = np.asarray(Image.open(Path(__file__).parent.parent / "cycleapp" / "examples" / "kodim23.png").convert("RGB"))
    rgb = np.ascontiguousarray(rgb[100:100 + h, 200:200 + w])
    rng = np.random.default_rng(3)
    base = np.clip(128 + 0.9 * (rgb.astype(float) - 128) + rng.normal(0, 3, rgb.shape), 0, 255).astype(np.uint8)
    return rgb, base


def test_the_choice_of_transforms_pays():
    """On a photo, files smaller than kind 4's (8x8 blocks everywhere) at the same step and no worse;
    the layout uses all three sizes. Fails if the choice is broken (e.g. always 8x8: the same file)."""
    rgb, base = photo()
    for step in (48, 160):
        p4, x4 = kind4.encode_layer(rgb, base, step, SEAL)
        enc = kind5.Encoder(rgb, base)
        p5, x5 = enc.encode(step, SEAL)
        e4, e5 = (np.mean((x.astype(float) - rgb) ** 2) for x in (x4, x5))
        assert len(p5) < 0.98 * len(p4) and e5 <= 1.01 * e4
        assert set(np.unique(enc.at(step).sizes)) == {8, 16, 32}


def test_smooth_areas_take_large_transforms_and_flat_8x8_tiles_small_ones():
    rgb = np.zeros((64, 128, 3), np.uint8)
    y, x = np.mgrid[:64, :64]
    rgb[:, :64] = (100 + x + y // 2)[..., None]  # a smooth ramp
    tiles = np.random.default_rng(0).integers(0, 256, (8, 8, 3))  # 8x8 tiles, each of one colour
    rgb[:, 64:] = np.repeat(np.repeat(tiles, 8, 0), 8, 1)
    base = np.full_like(rgb, 128)
    base[:, :64] = rgb[:, :64] // 2 + 60
    sizes = kind5.Encoder(rgb, base).sizes_at(64)
    assert (sizes[:, :8] == 32).mean() > 0.7
    assert (sizes[:, 8:] == 8).mean() > 0.7


def test_size_estimate():
    rgb, base = photo()
    enc = kind5.Encoder(rgb, base)
    for step in (32, 96):
        real = len(enc.encode(step, SEAL)[0])
        assert abs(enc.size(step) - real) <= 0.02 * real + 16


def test_layout_flags_round_trip():
    rng = np.random.default_rng(5)
    for shape in [(1, 1), (3, 5), (8, 8), (9, 14), (13, 3)]:
        sizes = np.full(shape, 8)
        sixteen = rng.random((shape[0] // 2, shape[1] // 2)) < 0.5
        thirty_two = rng.random((shape[0] // 4, shape[1] // 4)) < 0.5
        sizes[kind5._spread(sixteen, 16, shape)] = 16
        sizes[kind5._spread(thirty_two, 32, shape)] = 32
        assert np.array_equal(kind5.layout(shape, *kind5.flags_of(sizes)), sizes)
        coder = constriction.stream.stack.AnsCoder(np.array([1, 1], np.uint32))
        kind5.write_layout(coder, sizes)
        reader = constriction.stream.stack.AnsCoder(coder.get_compressed())
        assert np.array_equal(kind5.read_layout(reader, shape), sizes)


def test_a_flag_probability_of_zero_is_refused():
    coder = constriction.stream.stack.AnsCoder(np.array([1, 1], np.uint32))
    coder.encode_reverse(np.array([0, 32], np.int32), kind4._gain_model())
    with pytest.raises(ValueError, match="probability of zero"):
        kind5.read_layout(open_layer(coder.get_compressed().astype("<u4").tobytes(), 1 << 20), (8, 8))


@pytest.mark.parametrize("n", kind5.SIZES)
def test_integer_transforms_are_exact(n):
    """The float64 products of the base's integer transform equal int64 ones (exact by the bound),
    at the extremes of the pixels' range, and are 2^36 times the float transform, about."""
    rng = np.random.default_rng(n)
    pixels = rng.choice(np.array([0, 255], np.uint8), (2 * n, 3 * n, 3))
    pixels[:n] = rng.integers(0, 256, (n, 3 * n, 3))
    planes = kind5.planes(pixels, slice(0, 2 * n // 8), kind4.COLOUR_INT.astype(np.float64))
    exact = kind5.base_coefficients(planes, n)
    d = kind5.INTEGER_DCT[n]
    x = planes.astype(np.int64).reshape(3, 2, n, 3, n).transpose(0, 1, 3, 2, 4)
    assert np.array_equal(exact, kind5.deal(d @ x @ d.T, n))
    approx = kind5.coefficients(kind5.planes(pixels, slice(0, 2 * n // 8), kind5.kind2.COLOUR), n,
                                kind5.FLOAT_DCT[n])
    assert np.abs(exact / 2.0 ** kind4.BASE_SHIFT - approx).max() < 0.01 * 255 * n / 8


def test_deal_and_gather_are_inverses():
    c = np.arange(3 * 2 * 3 * 32 * 32).reshape(3, 2, 3, 32, 32)
    dealt = kind5.deal(c, 32)
    assert dealt.shape == (3, 8, 12, 8, 8)
    assert dealt[0, 1, 2, 3, 4] == c[0, 0, 0, 4 * 3 + 1, 4 * 4 + 2]
    assert np.array_equal(kind5.gather(dealt, 32), c)


def test_a_wrong_integer_dct_is_refused():
    assert np.array_equal(kind5.float_dct(8), kind5.FLOAT_DCT[8])  # (kind 2's, reused)
    with pytest.raises(RuntimeError):
        kind5._integer_dct(16, 1)


def test_decision_steps():
    for step in range(kind5.MIN_STEP, kind5.MAX_STEP + 1, 7):
        d = kind5.decision_step(step)
        assert abs(np.log2(d / step)) <= 1 / (2 * kind5.DECISIONS_PER_OCTAVE) + 0.01


def test_a_format_11_file_that_lies_is_refused():
    """A file of the layered codec (kind 5) whose header says another kind or step, or whose layer
    is cut, longer than the file, or put under a format 10 header: one BitstreamError each."""
    import cycleapp
    from cycleapp.core import codec, learned
    from cycleapp.core.bitstream import BitstreamError, CycFile
    from test_residual import _rewrite

    rgb, _ = photo(48, 64)
    data = codec.encode(learned.layered().checkpoint, rgb, layer=(codec.ADAPTIVE_TRANSFORM, 64))
    cyc = CycFile.from_bytes(data)
    assert data[3] == 11 and cyc.layer_kind == codec.ADAPTIVE_TRANSFORM
    bad = [_rewrite(data, step=0), _rewrite(data, step=65), _rewrite(data, kind=4), _rewrite(data, kind=3),
           _rewrite(data, kind=6), _rewrite(data, residual_length=len(cyc.layer) + 4),
           _rewrite(data, payload=bytes(cyc.layer)[:-4])]
    under10 = bytearray(data)
    under10[3] = 10
    bad.append(_rewrite(bytes(under10)))
    for b in bad:
        with pytest.raises(BitstreamError):
            cycleapp.decode(b)
    assert np.array_equal(cycleapp.decode(data), codec.encode_layers(
        learned.layered().checkpoint, rgb, layer=(codec.ADAPTIVE_TRANSFORM, 64))[1])
