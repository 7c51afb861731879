"""train.evaluate: the Bjontegaard delta rate against hand-computed cases, and the JSON it writes.

The command runs in this process (its `main`; a refusal is its SystemExit), on two 256x256 crops
of the example photos where what is tested is the JSON and the refusals, not the photos' numbers."""
import json
import math

import numpy as np
import pytest
from PIL import Image

from conftest import EXAMPLES
from train.data import image_files
from train.evaluate import PER_IMAGE, bd_rate, main, per_image_bd_rates

QUALITY = [28.0, 30.0, 32.0, 34.0, 36.0]


def curve(log_rate, quality=QUALITY, metric="psnr"):
    return {"bpp": [math.exp(log_rate(q)) for q in quality], metric: list(quality)}


def test_same_curve_at_80_percent_of_the_rate_is_minus_20():
    anchor = curve(lambda q: 0.3 * q - 10)
    test = curve(lambda q: 0.3 * q - 10 + math.log(0.8))
    assert bd_rate(anchor, test) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(test, anchor) == pytest.approx(25.0, abs=1e-9)  # and the other way round


def test_different_slopes_over_the_common_range():
    """log r_test - log r_anchor = q/10 - 3; over the common quality range [30, 36] its mean is
    (33/10 - 3) = 0.3, so BD-rate = exp(0.3) - 1 = +34.99 %."""
    anchor = curve(lambda q: q / 10 - 3.5, QUALITY)
    test = curve(lambda q: q / 5 - 6.5, [30.0, 31.5, 33.0, 34.5, 36.0, 38.0])
    assert bd_rate(anchor, test) == pytest.approx((math.exp(0.3) - 1) * 100, abs=1e-9)


def test_ms_ssim_is_taken_in_decibels():
    """MS-SSIM values m become -10 log10(1 - m) dB before the fit: rates exactly linear in those
    decibels, sampled at other qualities for the test curve and at half the rate, read -50 %
    (a fit over m itself would not be exact, and would read otherwise)."""
    def points(db, scale):
        db = np.array(db)
        return {"bpp": list(scale * np.exp(0.4 * db - 8)), "ms_ssim": list(1 - 10 ** (-db / 10))}

    anchor, test = points([10, 12, 14, 16, 18], 1.0), points([11, 13, 15, 17, 19], 0.5)
    assert bd_rate(anchor, test, "ms_ssim") == pytest.approx(-50.0, abs=1e-9)


def test_no_answer_without_overlap_or_points():
    anchor = curve(lambda q: 0.3 * q - 10)
    assert bd_rate(anchor, curve(lambda q: 0.3 * q - 10, [40.0, 41.0, 42.0, 43.0])) is None
    assert bd_rate(anchor, curve(lambda q: 0.3 * q - 10, QUALITY[:3])) is None
    with_nan = curve(lambda q: 0.3 * q - 10)
    with_nan["psnr"][0] = float("nan")  # a metric that did not apply: the point is left out
    assert bd_rate(anchor, with_nan) == pytest.approx(0.0, abs=1e-9)


def test_per_image_bd_rate_compares_each_image_on_its_own():
    """Two images, the test codec at 80 % of the anchor's rate on one and 125 % on the other: per
    image -20 % and +25 %, whatever the images' rates are relative to each other; an image whose
    curves do not overlap is left out, and curves without their images' points give None."""
    def image(scale, offset, quality=QUALITY):
        return curve(lambda q: 0.3 * q - 10 + offset + math.log(scale), quality)

    def with_images(*images):
        return {"bpp": [], "psnr": [], "per_image": {"bpp": [i["bpp"] for i in images],
                                                      "psnr": [i["psnr"] for i in images]}}

    anchor = with_images(image(1.0, 0.0), image(1.0, -2.0), image(1.0, 0.0))
    test = with_images(image(0.8, 0.0), image(1.25, -2.0), image(1.0, 0.0, [40.0, 41.0, 42.0, 43.0]))
    assert per_image_bd_rates(anchor, test) == pytest.approx([-20.0, 25.0], abs=1e-9)
    assert per_image_bd_rates(anchor, {"bpp": [], "psnr": []}) is None


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """A folder of two small photos (256x256 crops of two examples: MS-SSIM's five scales fit)."""
    folder = tmp_path_factory.mktemp("crops")
    for name in ("kodim04.png", "kodim23.png"):
        Image.open(EXAMPLES / name).crop((128, 128, 384, 384)).save(folder / name)
    return folder


def refused(*args) -> str:
    """The one `error:` line a refused evaluation stops with (exit status 1 as a command)."""
    with pytest.raises(SystemExit) as stopped:
        main([str(a) for a in args])
    message = str(stopped.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def test_evaluate_writes_every_requested_codec(tmp_path, crops, capsys):
    """One image, the learned codec and JPEG XL: a curve each in the JSON and a BD-rate line; and
    JPEG 2000 matched to each code size's file: the same bpp at every point, within the tolerance."""
    out = tmp_path / "r.json"
    main([str(a) for a in ("--images", crops, "--limit", "1", "--codecs", "cycle,jxl", "--matched", "jpeg2000",
                           "--out", out)])
    stdout = capsys.readouterr().out
    codecs = json.loads(out.read_text())["codecs"]
    from cycleapp.core import checkpoint
    from cycleapp.evaluation import registry
    assert codecs["cycle"]["setting"] == [p.stem for p in checkpoint.available()]
    assert len(codecs["jxl"]["bpp"]) == len(registry.get("jxl").settings)
    assert codecs["jxl"]["setting"][0] == "quality 0"
    for name in ("cycle", "jxl"):  # each image's points, in the order of the mean curve
        per_image = codecs[name]["per_image"]
        assert len(per_image["psnr"]) == 1 and per_image["bpp"][0] == pytest.approx(codecs[name]["bpp"])
    assert json.loads(out.read_text())["files"] == [image_files(crops)[0].name]
    assert any(line.strip().startswith("vs jxl") for line in stdout.splitlines())
    matched = json.loads(out.read_text())["matched"]
    assert set(matched) == {"cycle", "jpeg2000"}
    assert matched["cycle"]["bpp"] == pytest.approx(codecs["cycle"]["bpp"])  # the same files
    assert matched["jpeg2000"]["bpp"] == pytest.approx(matched["cycle"]["bpp"], rel=0.03)
    assert matched["jpeg2000"]["setting"] == [f"at {p.stem}" for p in checkpoint.available()]
    lines = stdout.splitlines()
    assert any(line.startswith("at matched sizes") for line in lines)
    assert any(line.split()[:3] == ["vs", "jpeg2000", "PSNR"] for line in lines[-2:])


def test_evaluate_refuses_an_unknown_codec(tmp_path, crops):
    args = ["--images", crops, "--codecs", "cycle", "--out", tmp_path / "r.json"]
    assert refused(*args[:3], "cycle,gif", *args[4:]).startswith("error: unknown codec(s) gif")
    assert refused(*args, "--matched", "jpeg,cycle").startswith(  # the learned codec is the one matched to
        "error: --matched: unknown codec(s) cycle")
    folder = tmp_path / "big"  # an image over compare's limit: refused before the sweep, not after it
    folder.mkdir()
    Image.new("RGB", (4100, 4000)).save(folder / "big.png")
    args[1] = folder
    assert refused(*args, "--matched", "jpeg2000").startswith("error: --matched: big.png: ")
    assert not (tmp_path / "r.json").exists()


def test_reused_curves_join_the_new_ones_and_a_mismatch_is_refused(tmp_path, crops, capsys):
    """--reuse takes the curves of the codecs not run now from an earlier JSON of the same images;
    an earlier JSON of another number of images is one error line, before any work."""
    from cycleapp.core import learned

    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"images": 1, "codecs": {"jpeg": {"bpp": [0.1, 0.2, 0.4, 0.8],
                                                                    "psnr": [25.0, 28.0, 31.0, 34.0],
                                                                    "ms_ssim": [0.9, 0.95, 0.97, 0.98]}}}))
    out = tmp_path / "r.json"
    args = ["--images", crops, "--limit", "1", "--codecs", "cycle", "--reuse", earlier, "--out", out]
    main([str(a) for a in args])
    codecs = json.loads(out.read_text())["codecs"]
    assert set(codecs) == {learned.LEARNED, "jpeg"} and codecs["jpeg"]["psnr"][0] == 25.0
    assert any(line.strip().startswith("vs jpeg") for line in capsys.readouterr().out.splitlines())
    out.unlink()
    args[args.index("--limit") + 1] = "2"  # its curves keep each image's points, here one image's
    earlier.write_text(json.dumps({"images": 1, "codecs": {"jpeg": codecs["jpeg"] | {"per_image": {
        k: [codecs["jpeg"][k]] for k in PER_IMAGE}}}}))
    assert refused(*args) == f"error: {earlier} has 1 images, this evaluation 2"
    earlier.write_text(json.dumps(json.loads(earlier.read_text()) | {"files": ["another.png"]}))
    args[args.index("--limit") + 1] = "1"
    assert refused(*args) == f"error: {earlier} is an evaluation of other images than these"
    for broken in ({"per_image": {"bpp": 5}}, {"psnr": [25.0, "x", 31.0, 34.0]}):  # hostile or damaged
        curve = {"bpp": [0.1, 0.2, 0.4, 0.8], "psnr": [25.0, 28.0, 31.0, 34.0], "ms_ssim": [0.9, 0.95, 0.97, 0.98]}
        earlier.write_text(json.dumps({"images": 1, "codecs": {"jpeg": curve | broken}}))
        assert refused(*args) == f"error: {earlier} is not the JSON of an earlier evaluation"
    assert not out.exists()  # refused before any work or file


def test_points_between_code_sizes_are_measured(photo):
    """Rate control in the evaluation: one point between each pair of neighbouring sizes, each file
    within 3 % of its target."""
    from train.evaluate import rate_control

    r = rate_control([EXAMPLES / "kodim23.png"])
    assert r["points"] == 4 and r["size_error_max"] <= 0.03
    assert math.isfinite(r["above_line_db_mean"]) and r["above_line_db_min"] <= r["above_line_db_mean"]


@pytest.mark.parametrize("size", [(512, 768), (171, 165), (200, 333), (60, 9)])
def test_metrics_are_the_libraries_own_to_the_bit(size):
    """SSIM and MS-SSIM (`metrics.Original`, which computes the original's part once for every file
    measured against it, and MS-SSIM's steps in place) give exactly what scikit-image's
    structural_similarity and pytorch-msssim's ms_ssim give, for several files against one
    original, at sizes with odd sides and ones too small for MS-SSIM's five scales."""
    from pytorch_msssim import ms_ssim as library_ms_ssim
    from skimage.metrics import structural_similarity

    from cycleapp.evaluation import metrics, registry

    h, w = size
    photo = np.array(Image.open(EXAMPLES / "kodim23.png").convert("RGB"))[:h, :w].copy()
    original = metrics.Original(photo)
    for name, setting in (("jpeg", 10), ("webp", 40), ("jpeg2000", 0.3)):
        codec = registry.get(name)
        decoded = codec.decode(codec.encode(photo, setting))
        # the libraries' functions on the layouts the metrics used to give them (float32 planes;
        # channels-last tensors, whose filters round otherwise than planar ones, by up to 1.2e-7)
        assert original.ssim(decoded) == metrics.ssim(photo, decoded) == float(structural_similarity(
            metrics._planes(photo), metrics._planes(decoded), channel_axis=0, data_range=255))
        if min(size) < metrics.MS_SSIM_MIN_SIDE:
            assert original.ms_ssim(decoded) is None
            continue
        assert original.ms_ssim(decoded) == metrics.ms_ssim(photo, decoded) == float(library_ms_ssim(
            metrics._channels_last(photo), metrics._channels_last(decoded), data_range=255))
