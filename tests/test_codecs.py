"""The codec interface: one registry, one measuring function, matching, and a codec added in one entry."""
import numpy as np
import pytest

from cycleapp.core import codec, learned
from cycleapp.core.bitstream import CycFile
from cycleapp.core.interface import Codec, Search
from cycleapp.core.learned import CycleCodec
from cycleapp.evaluation import registry, sweeps
from cycleapp.evaluation.compare import compare
from cycleapp.evaluation.measure import COLUMNS, measure
from cycleapp.evaluation.metrics import ms_ssim, psnr, ssim
from cycleapp.evaluation.registry import PillowCodec
from conftest import EXAMPLES


def test_every_codec_has_a_label_and_the_readers_agree():
    """The CLI, the app's labels and the evaluation take their codecs from the registry."""
    from cycleapp.__main__ import parser
    from cycleapp.evaluation import plots

    names = registry.names()
    assert names[0] == learned.LEARNED and len(set(names)) == len(names) and "jxl" in names
    assert set(plots.LABELS) == set(names) and all(plots.LABELS[n] for n in names)
    assert registry.matchable() == names[1:]
    compare_args = parser().parse_args(["compare", "x.png", "--code-size", "medium"])
    assert compare_args.codecs.split(",") == registry.matchable()


def test_measure_is_the_file_and_its_decoding(photo):
    entry = registry.get("jxl")
    m = measure(entry, photo, 40)
    assert m.data == entry.encode(photo, 40) and np.array_equal(m.reconstruction, entry.decode(m.data))
    row = m.row()
    assert list(row) == COLUMNS and row["codec"] == "jxl" and row["setting"] == "quality 40"
    assert row["bytes"] == len(m.data) and row["bpp"] == 8 * len(m.data) / (768 * 512)
    assert row["psnr"] == psnr(photo, m.reconstruction) and row["ssim"] == ssim(photo, m.reconstruction)
    assert row["ms_ssim"] == ms_ssim(photo, m.reconstruction)
    assert row["encode_ms"] > 0 and row["decode_ms"] > 0
    # JPEG XL as the issue measured it on kodim23 (quality 40, effort 7): about 0.285 bpp, 33.4 dB.
    assert 0.25 < row["bpp"] < 0.32 and 32.5 < row["psnr"] < 34.5


def test_cycle_entry_takes_encoder_settings_as_arguments(ckpt, photo):
    """The RDOQ weight is a field and the step offset the setting: no module global changes."""
    entry = CycleCodec(ckpt)
    assert entry.name == learned.LEARNED and entry.variant == ckpt.name
    assert entry.encode(photo) == codec.encode(ckpt, photo) == entry.encode(photo, 0)
    plain = CycleCodec(ckpt, float("inf")).encode(photo)
    assert plain == codec.encode(ckpt, photo, rdoq_weight=float("inf")) != entry.encode(photo)
    assert codec.RDOQ_WEIGHT == learned.DEFAULT_RDOQ_WEIGHT
    assert entry.describe(0) == ckpt.name and entry.describe(8) == f"{ckpt.name}, steps x0.883"
    finer, coarser = entry.encode(photo, 8), entry.encode(photo, -8)
    assert len(coarser) < len(entry.encode(photo)) < len(finer)
    assert psnr(photo, entry.decode(coarser)) < psnr(photo, entry.decode(finer))


@pytest.mark.parametrize("name,target", [("kodim23.png", 3000), ("kodim23.png", 9000), ("kodim04.png", 14000),
                                         ("kodim04.png", 40000)])
def test_the_learned_codec_reaches_any_size_within_three_percent(name, target):
    """Rate control: a code size and a step offset land within 3 % of the target, the offset is
    in the file, and decoding the file alone gives the encoder's own reconstruction."""
    from cycleapp.core.rate import TOLERANCE, match_learned
    from cycleapp.imageio import load_rgb

    rgb = load_rgb(EXAMPLES / name)
    m = match_learned(rgb, target)
    assert abs(len(m.data) - target) <= TOLERANCE * target and m.note == ""
    entry = learned.by_name(m.variant)
    if m.variant in (learned.LAYERED, learned.BRIDGE):  # beyond the code sizes: a base and a layer
        cyc = CycFile.from_bytes(m.data)
        assert cyc.step_shift == entry.step_shift and cyc.layer_kind == codec.ADAPTIVE_TILED and data_version(m.data) == 13
        assert entry.encode(rgb, m.setting) == m.data
        return
    assert CycFile.from_bytes(m.data).step_shift == -m.setting
    assert np.array_equal(codec.decode(m.data), codec.reconstruct(entry.checkpoint, rgb, step_shift=-m.setting))


def data_version(data: bytes) -> int:
    return data[3]


def test_the_code_is_read_from_the_file(ckpt, photo):
    """The code view needs no second encode: the file holds the code the encoder chose."""
    data = CycleCodec(ckpt).encode(photo)
    assert np.array_equal(CycleCodec(ckpt).code(data), codec.quantized_code(ckpt, photo)[0].numpy())


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown codec.*gif.*choose from jpeg"):
        registry.get("gif")
    with pytest.raises(ValueError, match="unknown code size 'gigantic'"):
        learned.by_name("gigantic")


@pytest.mark.parametrize("target", [8000, 20000, 45000])
def test_jpeg_xl_is_matched_within_three_percent(photo, target):
    from cycleapp.core.rate import TOLERANCE, match_size

    m = match_size(registry.get("jxl"), photo, target)
    assert abs(len(m.data) - target) <= TOLERANCE * target and m.note == ""
    assert len(registry.get("jxl").encode(photo, m.setting)) == len(m.data)


def test_curves_sweep_every_entry(photo):
    small = np.ascontiguousarray(photo[:192, :192])
    ours = sweeps.curve(learned.LEARNED, small)
    assert len(ours) == sum(len(e.settings) for e in registry.family(learned.LEARNED)) >= 10
    jxl = sweeps.curve("jxl", small)
    assert len(jxl) == len(registry.get("jxl").settings)
    for points in (ours, jxl):
        assert [p["bpp"] for p in points] == sorted(p["bpp"] for p in points)


def test_a_new_codec_is_one_entry(ckpt, photo, monkeypatch):
    """Adding a codec is one registry entry: compare, the CLI choices and the labels pick it up."""
    png = PillowCodec("png8", "PNG (8 colours)", "PNG", lambda n: dict(bits=int(n)), "bits",
                      Search(1, 8, "integer"), (1, 2, 4, 8))
    monkeypatch.setattr(registry, "CLASSICAL", (*registry.CLASSICAL, png))
    assert "png8" in registry.matchable() and registry.labels()["png8"] == "PNG (8 colours)"
    results = compare(np.ascontiguousarray(photo[:64, :64]), CycleCodec(ckpt), ["png8"])
    assert [r.codec for r in results] == [learned.LEARNED, "png8"]
    assert results[1].setting.startswith("bits ")


def test_a_size_a_codec_refuses_is_a_note_not_an_error(ckpt, noise_image):
    """x265 refuses a 5000x16 picture: HEIF gets a row without a file, the reason in its note, in
    matching, measuring, compare and the RD sweeps; the other codecs are measured as usual."""
    from cycleapp.core.interface import CodecError
    from cycleapp.core.rate import match_size
    from cycleapp.evaluation.compare import format_table

    rgb = noise_image(16, 5000)
    heif = registry.get("heif")
    with pytest.raises(CodecError, match="cannot encode a 5000x16 image .*x265"):
        heif.encode(rgb, 50)
    m = match_size(heif, rgb, 5000)
    assert m.data == b"" and "x265" in m.note
    failed = measure(heif, rgb)
    assert not failed.ok and "x265" in failed.note
    assert {k: v for k, v in failed.row().items() if v is not None} == {
        "codec": "heif", "note": failed.note}
    results = compare(rgb, CycleCodec(ckpt), ["heif", "jpeg"])
    assert [r.ok for r in results] == [True, False, True]
    heif_line = format_table([r.row() for r in results]).splitlines()[2]
    assert heif_line.split()[:9] == ["heif"] + ["n/a"] * 8 and "x265" in heif_line
    assert sweeps.curve("heif", rgb) == []
    assert len(sweeps.curve("jpeg", rgb, (10, 50))) == 2


@pytest.mark.parametrize("name,width,side", [("jpeg", 65_501, "65,500"), ("webp", 16_384, "16,383"),
                                             ("avif", 32_769, "32,768")])
def test_sides_a_library_cannot_write_or_read_back_are_refused_up_front(name, width, side):
    """libjpeg would print 'Maximum supported image dimension' to stderr, libavif writes a file its
    decoder refuses: these are checked before encoding."""
    from cycleapp.core.interface import CodecError

    with pytest.raises(CodecError, match=f"cannot encode a {width}x1 image .width and height at most {side}"):
        registry.get(name).encode(np.zeros((1, width, 3), np.uint8), 50)


def test_jpeg_of_a_narrow_image_at_any_quality(noise_image, capfd):
    """libjpeg writes an optimised file in one piece: a 2-pixel-wide image padded to 16-pixel
    blocks needs a larger buffer than Pillow gives (libjpeg printed 'Suspension not allowed here')."""
    for rgb in (noise_image(5000, 2), noise_image(2, 5000)):
        data = registry.get("jpeg").encode(rgb, 100)
        assert registry.get("jpeg").decode(data).shape == rgb.shape
    assert capfd.readouterr().err == ""


def test_compare_refuses_an_image_over_its_limit(ckpt):
    from cycleapp.evaluation import compare as comparing

    with pytest.raises(ValueError, match="over the limit of 16,000,000 for compare .encode takes up to 100,000,000"):
        compare(np.zeros((4001, 4000, 3), np.uint8), CycleCodec(ckpt), ["jpeg"])
    assert comparing.MAX_PIXELS == 16_000_000


class _Sized(Codec):
    """A stand-in learned code size whose file at step offset s is `natural * 1.1 ** s` bytes, and
    which records every encode."""
    name, search, settings = learned.LEARNED, Search(-20, 20, "integer"), (0,)

    def __init__(self, variant: str, natural: int, calls: list):
        self.variant, self.natural, self.calls = variant, natural, calls

    def encode(self, rgb, setting=None):
        self.calls.append((self.variant, setting))
        return bytes(max(1, round(self.natural * 1.1 ** setting)))


@pytest.mark.parametrize("naturals", [[500], [500, 900], [300, 500, 900, 1600, 2800]])
@pytest.mark.parametrize("target", [1, 320, 700, 1000, 2100, 10 ** 6])
def test_match_learned_bisects_the_code_sizes_and_encodes_nothing_twice(naturals, target, monkeypatch):
    """Files grow with the code size, so bisection finds the size nearest the target in ratio (the
    one an encode of every size would pick) with at most 4 of 5 such encodes (the largest first:
    above its file the layered codec takes over), and the step search starts from that size's
    file: no (size, setting) is encoded twice."""
    from cycleapp.core import rate

    calls = []
    entries = [_Sized(f"s{i}", n, calls) for i, n in enumerate(naturals)]
    monkeypatch.setattr(learned, "presets", lambda *args: entries)
    m = rate.match_learned(np.zeros((4, 4, 3), np.uint8), target)
    nearest = min(range(len(naturals)), key=lambda i: abs(np.log(naturals[i] / target)))
    if target > (1 + rate.TOLERANCE) * naturals[-1]:  # beyond the largest size's own file: its finer
        assert m.variant in (f"s{len(naturals) - 1}", learned.LAYERED, learned.BRIDGE)  # steps, or layered
        assert ("s%d" % (len(naturals) - 1), learned.FINEST) in calls
    else:
        assert m.variant == f"s{nearest}"
    assert len(calls) == len(set(calls))
    assert sum(setting == 0 for _, setting in calls) <= min(len(naturals), 4)
    assert m.encoded == (m.data, m.encode_s) and m.encode_s is not None


def test_compare_encodes_a_matched_codec_only_in_its_search(ckpt, photo, monkeypatch):
    """compare measures the file the size search chose, with the time that encode took: no setting
    of a matched codec is encoded twice."""
    calls = []
    encode = PillowCodec.encode
    monkeypatch.setattr(PillowCodec, "encode", lambda self, rgb, s=None: calls.append(s) or encode(self, rgb, s))
    results = compare(photo, CycleCodec(ckpt), ["jpeg"])
    assert calls and len(calls) == len(set(calls)) and results[1].value in calls
    assert results[1].data == encode(registry.get("jpeg"), photo, results[1].value)
    assert results[1].encode_s is not None and results[1].ok
