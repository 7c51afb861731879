"""The whole quality range (format 9): lossless, near-lossless, any size up to lossless, never a
worse image for a larger target, and targets out of reach said."""
import hashlib
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

import cycleapp
from cycleapp.__main__ import main
from cycleapp.api import TargetNotReached
from cycleapp.core import codec, learned, residual
from cycleapp.core.bitstream import BitstreamError, CycFile
from cycleapp.core.rate import match_learned
from cycleapp.evaluation.metrics import psnr

from conftest import EXAMPLES


@pytest.fixture(scope="module")
def crops():
    """Two small photos: a smooth one and a busy one (crops of the shipped examples)."""
    return [np.array(Image.open(EXAMPLES / "kodim23.png").convert("RGB"))[180:260, 280:400],
            np.array(Image.open(EXAMPLES / "kodim04.png").convert("RGB"))[40:112, 100:196]]


def test_lossless_is_bit_exact_and_near_lossless_keeps_every_pixel_within_n(crops, noise_image):
    for rgb in [*crops, noise_image(13, 29), noise_image(1, 1)]:
        data = cycleapp.encode(rgb, lossless=True)
        assert data[3] == 12 and CycFile.from_bytes(data).layer_kind == codec.PREDICTED_ALONE
        assert np.array_equal(cycleapp.decode(data), rgb)
        sizes = [len(data)]
        for n in (1, 2, 4, 16):
            data = cycleapp.encode(rgb, max_error=n)
            assert data[3] == 12
            assert np.abs(cycleapp.decode(data).astype(int) - rgb).max() <= n
            sizes.append(len(data))
        if rgb.size > 1000:
            assert sizes == sorted(sizes, reverse=True)  # smaller files as N rises


# format 9's pixel layer and 10's predicted one (no longer written unless asked for, still read), and
# 12's predicted layer alone
@pytest.mark.parametrize("kind", [1, 3, 6])
def test_the_decoder_gives_the_pixels_the_encoder_promised(crops, kind):
    ckpt = None if kind == codec.PREDICTED_ALONE else learned.layered().checkpoint
    for step in (16, 37, 80, 555):
        data, pixels = codec.encode_layers(ckpt, crops[1], layer=(kind, step))
        assert data[3] == {1: 9, 3: 10, 6: 12}[kind]
        assert np.array_equal(codec.decode(data), pixels)
        assert np.abs(pixels.astype(int) - crops[1]).max() <= residual.max_error(step)


def test_a_larger_target_never_gives_a_worse_image(crops):
    """Twelve targets from the smallest file to 8 bpp (or the lossless size): PSNR never falls."""
    for rgb in crops:
        pixels = rgb.shape[0] * rgb.shape[1]
        lossless = len(cycleapp.encode(rgb, lossless=True))
        smallest = len(learned.presets()[0].encode(rgb, learned.CycleCodec.search.low))  # coarsest steps
        top = min(8 * pixels // 8, lossless)
        targets = np.geomspace(smallest, top, 12).round().astype(int)
        quality = []
        for target in targets:
            m = match_learned(rgb, int(target))
            quality.append(psnr(rgb, cycleapp.decode(m.data)))
        assert all(b >= a - 0.05 for a, b in zip(quality, quality[1:])), list(zip(targets, quality))
        assert quality[-1] > 45


def test_no_worse_image_across_the_switch_to_the_layered_codec(crops):
    """Targets from the largest code size's own file to a quarter above it, in steps of 2.5 %: the
    switch from its finer steps to the layered codec (whose base is its finest file) never costs
    quality, and every target there is reached."""
    rgb = crops[0]
    natural = len(learned.presets()[-1].encode(rgb))
    quality = []
    for target in np.arange(1.0, 1.25, 0.025) * natural:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            data = cycleapp.encode(rgb, target_bytes=int(target))
        quality.append(psnr(rgb, cycleapp.decode(data)))
    assert all(b >= a - 0.05 for a, b in zip(quality, quality[1:])), quality


def test_just_above_the_code_sizes_the_better_base_is_kept(crops):
    """Just beyond the largest code size's finest file (under BRIDGE_BELOW times the layered
    codec's base), rate control tries the layered codec over `large` and over `huge`'s finest file
    (the bridge): the file it returns is at least as good as either's match within the budget."""
    from cycleapp.core.rate import BRIDGE_BELOW, TOLERANCE, Made, match_layered

    for rgb in crops:
        made = Made(rgb)
        made.layered = learned.layered().for_image(rgb)
        target = int(1.15 * len(learned.presets()[-1].encode(rgb, learned.FINEST)))
        assert target < BRIDGE_BELOW * made.layered.base_bytes()  # (else the bridge is not tried)
        m = match_learned(rgb, target, made)
        assert made.bridge is not None  # (the finest file itself is a candidate here too)
        assert m.variant in (learned.LAYERED, learned.BRIDGE, learned.presets()[-1].variant)
        assert len(m.data) <= (1 + TOLERANCE) * target
        ours = psnr(rgb, cycleapp.decode(m.data))
        for entry in (made.layered, made.bridge):
            other = match_layered(entry, rgb, target)
            if len(other.data) <= (1 + TOLERANCE) * target:
                assert ours >= psnr(rgb, cycleapp.decode(other.data)) - 1e-9


def test_the_pixels_rate_control_compares_are_the_files_own(crops):
    """`LayeredCodec.pixels_at` (what `_match_beyond` scores candidates on) gives the very pixels a
    setting's file decodes to, over the layered codec's base and the bridge's, and still after other
    steps have pushed that setting's levels out of the encoder's keeping."""
    rgb = crops[1]
    for layered in (learned.layered().for_image(rgb), learned.bridge().for_image(rgb)):
        data = layered.encode(rgb, 96)
        for setting in (60, 70, 80, 90, 100):  # (more steps than the encoder keeps)
            layered.estimate(setting)
        assert np.array_equal(layered.pixels_at(96), cycleapp.decode(data))
    with pytest.raises(AssertionError):
        layered.pixels_at(learned.LADDER)


def test_further_above_only_the_smaller_base_is_tried(crops):
    """From BRIDGE_BELOW times the layered codec's base the bridge is worse (`rate.BRIDGE_BELOW`):
    its base is not made (speed and memory); the file is the layered codec's (or near the largest
    code size's finest file, that file) within the budget."""
    from cycleapp.core.rate import BRIDGE_BELOW, TOLERANCE, Made

    for rgb in crops:
        made = Made(rgb)
        made.layered = learned.layered().for_image(rgb)
        finest = len(learned.presets()[-1].encode(rgb, learned.FINEST))
        target = max(BRIDGE_BELOW * made.layered.base_bytes(), int(1.15 * finest))  # (beyond the code sizes)
        m = match_learned(rgb, target, made)
        assert made.bridge is None and m.variant in (learned.LAYERED, learned.presets()[-1].variant)
        assert len(m.data) <= (1 + TOLERANCE) * target


def test_a_target_far_beyond_the_code_sizes_makes_none_of_their_files(crops):
    """A target of a photo's usual sizes, CLEARLY_BEYOND times the layered codec's base or more,
    goes straight to the layered codec: no code size's file is made, nor the largest one's finest
    (speed only: the file it gives is better than that finest file)."""
    from cycleapp.core.rate import CLEARLY_BEYOND, LAYERED_FIRST_BPP, TOLERANCE, Made

    for rgb in crops:
        layered = learned.layered().for_image(rgb)
        base = layered.base_bytes()
        target = max(CLEARLY_BEYOND * base, int(LAYERED_FIRST_BPP * rgb.shape[0] * rgb.shape[1] / 8) + 1)
        made = Made(rgb)
        m = match_learned(rgb, target, made)
        assert not made.natural and not made.finest
        assert m.variant in (learned.LAYERED, learned.BRIDGE) and len(m.data) <= (1 + TOLERANCE) * target
        finest = learned.presets()[-1].encode(rgb, learned.FINEST)
        assert psnr(rgb, cycleapp.decode(m.data)) > psnr(rgb, cycleapp.decode(finest))


def test_a_target_just_above_the_code_sizes_is_reached_or_said(crops):
    """Between the largest code size's finest file and the layered codec's smallest files (on a
    small image its tables are most of a layer), a target is met within 3 % or the note says not."""
    from cycleapp.core.rate import TOLERANCE

    for rgb in crops:
        finest = len(learned.presets()[-1].encode(rgb, learned.FINEST))
        for factor in (1.1, 1.3):
            m = match_learned(rgb, int(factor * finest))
            assert abs(len(m.data) - int(factor * finest)) <= TOLERANCE * int(factor * finest) or m.note


def test_the_tables_are_the_ones_files_were_written_with():
    """The enhancement layer's tables are built, not stored: they must never change (files last)."""
    weights, _ = residual.tables()
    assert hashlib.sha256(weights.tobytes()).hexdigest()[:16] == TABLES_SHA


TABLES_SHA = "f01364eb24092573"


def test_targets_out_of_reach_are_said(crops, tmp_path, capsys):
    rgb = crops[0]
    with pytest.warns(TargetNotReached, match="lossless file is"):
        data = cycleapp.encode(rgb, target_bytes=10_000_000)
    assert np.array_equal(cycleapp.decode(data), rgb)  # the lossless file
    with pytest.warns(TargetNotReached, match="cannot go below"):
        cycleapp.encode(rgb, target_bytes=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cycleapp.encode(rgb, target_bytes=len(cycleapp.encode(rgb, "medium")))  # within reach: silent
    Image.fromarray(rgb).save(tmp_path / "in.png")
    assert main(["encode", str(tmp_path / "in.png"), str(tmp_path / "x.cyc"), "--target-bytes", "10000000"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("note: target 10,000,000 bytes not reached") and err.count("\n") == 1
    assert (tmp_path / "x.cyc").exists()
    cycleapp.register()
    with pytest.warns(TargetNotReached):
        Image.fromarray(rgb).save(tmp_path / "p.cyc", target_bytes=10_000_000)
    Image.fromarray(rgb).save(tmp_path / "l.cyc", lossless=True)
    assert np.array_equal(np.array(Image.open(tmp_path / "l.cyc")), rgb)


@pytest.mark.parametrize("args", [["--max-error", "0"], ["--max-error", "17"], ["--max-error", "two"],
                                  ["--lossless", "--target-bytes", "5000"], ["--lossless", "--max-error", "2"]])
def test_bad_modes_are_refused_with_one_line_and_nothing_written(crops, tmp_path, capsys, args):
    Image.fromarray(crops[0]).save(tmp_path / "in.png")
    with pytest.raises(SystemExit) as exit_:
        main(["encode", str(tmp_path / "in.png"), str(tmp_path / "x.cyc"), *args])
    assert exit_.value.code == 2 and not (tmp_path / "x.cyc").exists()
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("python -m cycleapp encode: error:")


@pytest.mark.parametrize("kwargs", [dict(max_error=0), dict(max_error=17), dict(max_error=2.5), dict(max_error=True),
                                    dict(lossless=True, target_bytes=100), dict(lossless=True, max_error=1)])
def test_the_api_refuses_bad_modes(crops, kwargs):
    with pytest.raises(ValueError):
        cycleapp.encode(crops[0], **kwargs)


def _rewrite(data: bytes, step: int | None = None, residual_length: int | None = None, payload=None,
             kind: int | None = None) -> bytes:
    """A file with a layer (format 9 or 10) with header fields changed and its CRC made right again."""
    head = struct.calcsize("<3sB8sIIHHHbI")
    body = bytearray(data[:-4])
    old_kind, old_step, old_length = struct.unpack_from("<BHI", body, head)
    struct.pack_into("<BHI", body, head, old_kind if kind is None else kind, old_step if step is None else step,
                     old_length if residual_length is None else residual_length)
    if payload is not None:
        body = body[:len(body) - old_length] + payload
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


@pytest.mark.parametrize("version", [10, 12])
def test_a_near_lossless_file_that_lies_is_refused(crops, version):
    """Format 10's (kind 3, over a learned code: written where a caller asks for it) and format 12's
    (kind 6, alone)."""
    rgb = crops[1][:40, :40]
    data = cycleapp.encode(rgb, max_error=2) if version == 12 else \
        codec.encode(learned.layered().checkpoint, rgb, layer=(codec.PREDICTED, residual.near_lossless_step(2)))
    assert data[3] == version
    cyc = CycFile.from_bytes(data)
    bad = [
        _rewrite(data, step=0),  # a layer with no step
        _rewrite(data, step=3 * 16),  # another step than it was coded with: the seal differs
        _rewrite(data, kind=2),  # read as another kind of layer (of format 9)
        _rewrite(data, kind=1),
        _rewrite(data, kind=4),  # a kind of this version (10) or another's (12)
        _rewrite(data, kind=6 if version == 10 else 3),  # the other version's near-lossless kind
        _rewrite(data, kind=7),  # a kind of format 13
        _rewrite(data, kind=99),  # a kind that does not exist
        _rewrite(data, residual_length=len(cyc.layer) + 4),  # longer than the file
        _rewrite(data, payload=bytes(cyc.layer)[:-4]),  # a layer cut short, the length made to agree
    ]
    lossy = codec.encode(learned.layered().checkpoint, rgb, layer=(codec.TRANSFORM, 64))
    assert lossy[3] == 9
    bad.append(_rewrite(lossy, kind=3))  # a kind of format 10 in a format 9 file
    cut = bytes(cyc.layer)[:-8] + bytes(cyc.layer)[-4:]
    bad.append(_rewrite(data, residual_length=len(cut), payload=cut))
    for b in bad:
        with pytest.raises(BitstreamError):
            cycleapp.decode(b)
    flipped = bytearray(data)
    flipped[-10] ^= 0x40
    with pytest.raises(BitstreamError, match="checksum"):
        cycleapp.decode(bytes(flipped))


def test_a_file_without_the_layer_is_written_as_format_8(crops):
    """The presets' files are the bytes they were: older releases still read them."""
    assert cycleapp.encode(crops[0], "small")[3] == 8


def test_values_beyond_the_tables_are_escaped_never_clamped():
    """A residual far from its base (here the whole range): its DCT coefficients run far past the
    tables' +-255 and still come back exactly; the pixel layer is lossless over it too."""
    from cycleapp.core import dct_layer

    rng = np.random.default_rng(3)
    rgb = np.where(rng.random((16, 24, 3)) < 0.5, 0, 255).astype(np.uint8)
    rgb[:8, :8] = 255
    base = np.zeros_like(rgb)
    step = dct_layer.MIN_STEP
    q = dct_layer.forward(rgb.astype(np.int64) - base) * (residual.STEP_UNIT / step)
    assert np.abs(q).max() > 4 * residual.RADIUS
    payload, pixels = dct_layer.encode_layer(rgb, base, step, 1 << 32)
    assert np.array_equal(dct_layer.decode_layer(payload, base, step, 1 << 32), pixels)
    assert np.abs(pixels.astype(int) - rgb).max() <= 2
    payload, pixels = residual.encode_layer(rgb, base, residual.STEP_UNIT, 1 << 32)
    assert np.array_equal(residual.decode_layer(payload, base, residual.STEP_UNIT, 1 << 32), rgb)


def test_the_app_says_a_missed_target_in_words_not_a_green_done():
    from cycleapp.app import ui

    rows = [{"codec": "cycle", "bytes": 461_414, "bpp": 9.39, "psnr": float("inf"), "ms_ssim": 1.0,
             "setting": "lossless", "note": "the lossless file is 461414 bytes, the largest "
                                                         "this codec makes (target 1500000)"},
            {"codec": "jpeg", "note": ""}]
    assert ui.missed_target(rows, 1_500_000) and not ui.missed_target(rows, None)
    lines = ui.success_lines(rows, "", 1.0, 1_500_000)
    assert lines[0].startswith("The target of 1,500,000 bytes is out of CycleCodec's reach")
    assert "status-warn" in ui.status_html("warn", lines)
    rows[0]["note"] = ""
    assert not ui.missed_target(rows, 1_500_000)


def test_the_lossless_layer_takes_images_of_at_most_its_pixels():
    """The predicted pixel layer's decoder needs about 300 bytes a pixel: its files (kinds 3 and 6)
    hold at most half the pixels of the other layers', refused by the encoder and, whatever a header
    says, by the container before anything is allocated."""
    from cycleapp.core.bitstream import MAX_LAYER_PIXELS, MAX_LAYER_PIXELS_OF_KIND

    most = MAX_LAYER_PIXELS_OF_KIND[codec.PREDICTED_ALONE]
    assert most == MAX_LAYER_PIXELS_OF_KIND[codec.PREDICTED] < MAX_LAYER_PIXELS
    big = np.zeros((most // 2048 + 1, 2048, 3), np.uint8)
    with pytest.raises(ValueError, match="at most 8,388,608 pixels"):
        cycleapp.encode(big, lossless=True)
    small = np.zeros((16, 16, 3), np.uint8)
    for data in (cycleapp.encode(small, lossless=True),
                 codec.encode(learned.layered().checkpoint, small, layer=(codec.PREDICTED, 16))):
        cyc = CycFile.from_bytes(data)
        cyc.width, cyc.height = 2048, 16 * (most // 2048 // 16 + 1)  # a header that says a larger image
        if cyc.has_code:
            cyc.code_shape = (cyc.code_shape[0], cyc.height // 16, 128)
        with pytest.raises(BitstreamError, match="at most 8,388,608"):
            cycleapp.decode(cyc.to_bytes())


def test_a_lossless_file_holds_no_learned_code_and_a_header_that_says_it_does_is_refused():
    """Format 12's lossless and near-lossless files name no checkpoint and hold no code (`STANDALONE`);
    every header field that would say otherwise is refused by the container, and the layer's seal
    binds the rest (the image size, the step)."""
    from cycleapp.core import checkpoint

    rgb = np.array(Image.open(EXAMPLES / "kodim23.png").convert("RGB"))[:20, :30]
    data = cycleapp.encode(rgb, max_error=1)
    cyc = CycFile.from_bytes(data)
    assert (cyc.checkpoint_id, cyc.code_shape, cyc.step_shift, len(cyc.payload)) == (bytes(8), (0, 0, 0), 0, 0)
    assert not cyc.has_code and len(data) == 38 + len(cyc.layer) + 4
    tiny = checkpoint.by_name("tiny")
    lies = {"checkpoint": dict(checkpoint_id=tiny.id), "code shape": dict(code_shape=(tiny.channels, 2, 2)),
            "step shift": dict(step_shift=1), "payload": dict(payload=bytes(8))}
    for name, fields in lies.items():
        twin = CycFile.from_bytes(data)
        for field, value in fields.items():
            setattr(twin, field, value)
        with pytest.raises(BitstreamError, match="stands alone"):
            cycleapp.decode(twin.to_bytes())
    for field, value in (("width", 31), ("layer_step", 16)):
        twin = CycFile.from_bytes(data)
        setattr(twin, field, value)
        with pytest.raises(BitstreamError, match="corrupted .cyc enhancement layer"):
            cycleapp.decode(twin.to_bytes())
    with pytest.raises(BitstreamError, match="holds no learned code"):
        codec.read_code(data)
    with pytest.raises(ValueError, match="none for a layer that stands alone"):
        codec.encode(tiny, rgb, layer=(codec.PREDICTED_ALONE, 16))
    with pytest.raises(ValueError, match="a checkpoint is needed"):
        codec.encode(None, rgb, layer=(codec.ADAPTIVE_TILED, 64))


def test_lossless_and_near_lossless_need_no_checkpoint(tmp_path, monkeypatch):
    """Their files name no checkpoint (format 12), so neither their encoder nor their decoder looks
    for one: with none installed they still work, and a lossy file is refused in words."""
    rgb = np.array(Image.open(EXAMPLES / "kodim23.png").convert("RGB"))[:24, :40]
    monkeypatch.setenv("CYCLECODEC_CHECKPOINTS", str(tmp_path))  # an empty directory
    assert np.array_equal(cycleapp.decode(cycleapp.encode(rgb, lossless=True)), rgb)
    near = cycleapp.decode(cycleapp.encode(rgb, max_error=2))
    assert np.abs(near.astype(int) - rgb).max() <= 2
    with pytest.raises(ValueError, match="none installed"):
        cycleapp.encode(rgb, code_size="medium")
