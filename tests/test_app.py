"""The app's /compare API, driven by gradio_client as a script would."""
import html
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import cycleapp

from app_server import running_app
from conftest import EXAMPLES, run_cli


@pytest.fixture(scope="module")
def client():
    from gradio_client import Client

    with running_app() as url:
        yield Client(url, verbose=False)


def call(client, path, size, codecs, target_kb=None, match=None):
    """/compare as a script calls it: three inputs (the original contract), four with a target, five
    with what to match ('size', 'psnr' or 'ms_ssim')."""
    from gradio_client import handle_file

    if match is not None:
        return client.predict(handle_file(str(path)), size, codecs, target_kb, match, api_name="/compare")
    if target_kb is None:
        return client.predict(handle_file(str(path)), size, codecs, api_name="/compare")
    return client.predict(handle_file(str(path)), size, codecs, target_kb, api_name="/compare")


@pytest.fixture(scope="module")
def middle_size():
    from cycleapp.core import checkpoint

    sizes = checkpoint.available()
    return sizes[len(sizes) // 2].stem


def test_compare_api_matched_sizes_and_pixel_exact(client, middle_size, tmp_path):
    out = call(client, EXAMPLES / "kodim23.png", middle_size, ["jpeg", "jpeg2000"])
    status, table, cyc_path, recon_paths = out[:4]
    rows = [dict(zip(table["headers"], r)) for r in table["data"]]
    assert [r["codec"] for r in rows] == ["cycle", "jpeg", "jpeg2000"]
    cyc_bytes = open(cyc_path, "rb").read()
    assert rows[0]["bytes"] == len(cyc_bytes)
    assert rows[0]["bpp"] == pytest.approx(8 * len(cyc_bytes) / (768 * 512), abs=1e-4)
    for r in rows[1:]:
        assert abs(r["bytes"] - len(cyc_bytes)) <= 0.03 * len(cyc_bytes), r
        assert r["note"] == ""
    # The reconstruction the app returns is exactly what the CLI decodes from the returned .cyc.
    assert run_cli("decode", cyc_path, tmp_path / "cli.png").returncode == 0
    served = np.array(Image.open(recon_paths[0]))
    assert Image.open(recon_paths[0]).format == "PNG" and served.shape == (512, 768, 3)
    assert np.array_equal(served, np.array(Image.open(tmp_path / "cli.png")))
    # And the inspector shows those same files (PNG, not a lossy re-encoding), the original included.
    view = html.unescape(out[5])
    shown = {Path(p).name: p for p in re.findall(r"gradio_api/file=([^\"]+?\.png)", view)}
    cycle_png = shown[Path(recon_paths[0]).name]
    assert np.array_equal(np.array(Image.open(cycle_png)), served)
    original = [p for name, p in shown.items() if name.endswith(".original.png")][0]
    assert np.array_equal(np.array(Image.open(original)), np.array(Image.open(EXAMPLES / "kodim23.png").convert("RGB")))
    for path, r in zip(recon_paths, rows):
        assert path.endswith(f"{r['codec']}.png")
    # Every codec's own file, named by codec, is the file the table measured: its bytes, its pixels.
    files = out[7]
    assert [Path(p).suffix for p in files] == [".cyc", ".jpg", ".j2k"]
    for path, r, recon in zip(files, rows, recon_paths):
        assert Path(path).stat().st_size == r["bytes"]
        assert f".{r['codec']}." in Path(path).name or Path(path).name == f"kodim23.{r['setting']}.cyc"
        pixels = cycleapp.decode(Path(path).read_bytes()) if path.endswith(".cyc") else np.array(Image.open(path))
        assert np.array_equal(pixels, np.array(Image.open(recon)))


def test_a_codec_that_cannot_encode_the_size_is_a_row_not_a_failure(client, tmp_path):
    """x265 refuses 5000x16: the comparison still answers, HEIF's row says why, only the codecs
    that made a file have a reconstruction and an inspector view, and the plot still draws."""
    path = tmp_path / "strip.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 5000, 3), dtype=np.uint8)).save(path)
    status, table, cyc_path, recon_paths, _, view = call(client, path, "tiny", ["jpeg", "heif"])[:6]
    rows = {r[0]: dict(zip(table["headers"], r)) for r in table["data"]}
    assert rows["heif"]["bytes"] == "n/a" and rows["heif"]["note"], rows["heif"]
    assert rows["jpeg"]["bytes"] > 0
    assert [Path(p).name.split(".")[-2] for p in recon_paths] == ["cycle", "jpeg"]
    assert "heif.png" not in html.unescape(view) and "jpeg.png" in html.unescape(view)
    # The plot the page asks for next takes that table (HEIF's row has no star, and no curve).
    from gradio_client import handle_file

    plot = client.predict(handle_file(str(path)), "tiny", ["jpeg", "heif"], table, api_name="/rd_plot")
    assert plot and plot.get("type") == "matplotlib"


def test_compare_api_at_the_same_quality(client, tmp_path):
    """The fifth input asks for the same PSNR: every codec within its tolerance of ours (or its
    row says why), the verdict in bytes; the files are still the table's."""
    from cycleapp.evaluation.matching import QUALITY_TOLERANCE

    small = tmp_path / "small.png"
    Image.open(EXAMPLES / "kodim23.png").convert("RGB").crop((200, 100, 456, 292)).save(small)
    out = call(client, small, "small", ["jpeg", "webp"], "", "psnr")
    rows = [dict(zip(out[1]["headers"], r)) for r in out[1]["data"]]
    assert [r["codec"] for r in rows] == ["cycle", "jpeg", "webp"] and "the same PSNR" in out[0]
    for r in rows[1:]:  # the API rounds PSNR to 0.01 dB
        assert abs(r["psnr"] - rows[0]["psnr"]) <= QUALITY_TOLERANCE["psnr"] + 0.01 or r["note"], r
    assert "the bytes each codec needs" in html.unescape(out[4]) and "x the bytes" in html.unescape(out[4])
    assert [Path(p).stat().st_size for p in out[7]] == [r["bytes"] for r in rows]


def test_compare_api_rejects_bad_input(client, ckpt, tmp_path):
    from gradio_client.exceptions import AppError, ValidationError

    fake = tmp_path / "fake.png"
    fake.write_text("this is text, not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path, size, codecs, expected in [(fake, ckpt.name, ["jpeg"], "Could not read"),
                                         (empty, ckpt.name, ["jpeg"], "empty"),
                                         (EXAMPLES / "kodim23.png", "gigantic", ["jpeg"], "gigantic"),
                                         (EXAMPLES / "kodim23.png", ckpt.name, ["jpeg", "gif"], "gif"),
                                         (EXAMPLES / "kodim23.png", (ckpt.name, 0), ["jpeg"], "more than 0 KB"),
                                         (EXAMPLES / "kodim23.png", (ckpt.name, -5), ["jpeg"], "more than 0 KB"),
                                         (EXAMPLES / "kodim23.png", (ckpt.name, 2e5), ["jpeg"], "over the limit")]:
        size, target = size if isinstance(size, tuple) else (size, None)
        # refused before the queue by /compare's validator (ValidationError), or by the run (AppError)
        with pytest.raises((AppError, ValidationError), match=expected) as err:
            call(client, path, size, codecs, target)
        # The reason, without the server's paths (Gradio's upload folder, the repository).
        message = str(err.value)
        assert "/" not in message and "\\" not in message, message


def test_compare_api_target_size(client, middle_size, tmp_path):
    """A target in KB: the .cyc file within 3 % of it, the chosen code size and step offset shown,
    the others matched to the file, and the served reconstruction still what the CLI decodes."""
    target = 21.5  # KB: between two code sizes on this photo, so the step offset does the work
    status, table, cyc_path, recon_paths = call(client, EXAMPLES / "kodim23.png", middle_size, ["jpeg"],
                                                target)[:4]
    rows = [dict(zip(table["headers"], r)) for r in table["data"]]
    cyc_bytes = open(cyc_path, "rb").read()
    assert rows[0]["codec"] == "cycle" and rows[0]["bytes"] == len(cyc_bytes)
    assert abs(len(cyc_bytes) - 21_500) <= 0.03 * 21_500 and rows[0]["note"] == ""
    assert abs(rows[1]["bytes"] - len(cyc_bytes)) <= 0.03 * len(cyc_bytes)
    assert "Target 21,500 bytes" in status and f"code size {html.escape(rows[0]['setting'])}" in status
    assert run_cli("decode", cyc_path, tmp_path / "cli.png").returncode == 0
    assert np.array_equal(np.array(Image.open(recon_paths[0])), np.array(Image.open(tmp_path / "cli.png")))


def test_size_request_validation():
    from cycleapp.app.ui import UserError, resolve_size

    assert resolve_size("medium").target_bytes is None
    assert resolve_size("medium", 12.3456).reference == 12_346  # KB x 1000, whole bytes
    assert resolve_size("medium", " 20 kB ").target_bytes == 20_000  # the textbox's text
    assert resolve_size("medium", "").target_bytes is None and resolve_size("medium", " ").target_kb is None
    for bad in (0, -1, float("nan"), 1e6, "0", "-3", "twelve", "1e9"):
        with pytest.raises(UserError):
            resolve_size("medium", bad)


def test_huge_image_is_downscaled_with_a_note(client, ckpt, tmp_path):
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1700, 2600, 3), dtype=np.uint8)).save(big)
    status, table = call(client, big, ckpt.name, ["jpeg"])[:2]
    assert "downscaled" in status
    rows = [dict(zip(table["headers"], r)) for r in table["data"]]
    assert [r["codec"] for r in rows] == ["cycle", "jpeg"]
    # Matched within 3 %, or the row says why not: never a silent mismatch.
    assert abs(rows[1]["bytes"] - rows[0]["bytes"]) <= 0.03 * rows[0]["bytes"] or rows[1]["note"]


# ---- the app's helpers (no server) ----------------------------------------------------------

def make_row(codec, nbytes, psnr, ms_ssim=None, note="", **more):
    row = {"codec": codec, "setting": "s", "bytes": nbytes, "bpp": None if nbytes is None else nbytes / 1000,
           "psnr": psnr, "ssim": None if psnr is None else psnr / 40, "ms_ssim": ms_ssim,
           "encode_ms": None if nbytes is None else 5.0, "decode_ms": None if nbytes is None else 5.0, "note": note}
    return dict(row, **more)


def test_table_formats_units_and_stars_only_matched_codecs():
    from cycleapp.app.ui import MAIN_COLUMNS, TABLE, results_html, success_lines

    rows = [make_row("cycle", 1000, 33.0, 0.95, encode_ms=50.0, decode_ms=60.0),
            make_row("jpeg", 1010, 31.5, 0.96, note="cannot go below 1010 bytes", encode_ms=2.0, decode_ms=1.0),
            # the best PSNR of all, but 20 % larger: it missed the size and wins nothing
            make_row("webp", 1200, 34.0, 0.99, note="largest file is 1200 bytes", encode_ms=1.0)]
    page = results_html(rows)
    assert ">33.00<" in page  # fixed decimals
    assert [k for k, *_ in TABLE if k != "ratio"][:len(MAIN_COLUMNS)] == MAIN_COLUMNS  # a phone's columns first
    assert "dB" in page and "bits/pixel" in page  # units in the headers
    best = re.findall(r"<td class='c-(\w+) best'", page)
    assert "bytes" not in best and "bpp" not in best  # what was matched is never starred
    assert sorted(best) == ["decode_ms", "encode_ms", "ms_ssim", "psnr", "ssim"], best
    webp = re.search(r"<tr data-codec='webp'.*?</tr>", page).group(0)
    assert "★" not in webp and "not matched" in webp and "missed" in webp
    cycle = re.search(r"<tr data-codec='cycle'.*?</tr>", page).group(0)
    assert "c-psnr best" in cycle and "c-ms_ssim best" not in cycle  # JPEG matched: its MS-SSIM wins
    verdict = re.search(r"<div class='verdict'[^>]*>", page).group(0)
    assert "data-winner-psnr='cycle'" in verdict and "data-winner-ms-ssim='jpeg'" in verdict
    lines = success_lines(rows, "", 1.0)
    assert lines[1] == "JPEG: cannot go below 1010 bytes" and lines[2] == "WebP: largest file is 1200 bytes"


def test_verdict_at_the_same_size_names_the_winner_and_the_gap():
    from cycleapp.evaluation.verdict import competes, stars, verdict

    rows = [make_row("cycle", 28_547, 33.00, 0.9500), make_row("avif", 28_900, 33.06, 0.9490),
            make_row("jpeg2000", 29_503, 34.00, 0.9900),  # +3.3 %: outside the match
            make_row("heif", None, None, note="cannot encode a 5000x16 image")]
    assert competes(rows) == [True, True, False, False]
    v = verdict(rows)
    assert v.winners == {"psnr": ["avif"], "ms_ssim": ["cycle"]} and v.missed == ["jpeg2000", "heif"]
    text = "\n".join(v.lines)
    assert "28,547 bytes" in v.lines[0]
    assert "PSNR: AVIF is best, +0.06 dB over CycleCodec." in text
    assert "MS-SSIM: CycleCodec is best, +0.0010 over AVIF, the next best." in text
    assert "JPEG 2000 (+3.3 %)" in text and "HEIF (HEVC) (no file)" in text
    marks = stars(rows)
    assert marks["psnr"] == {1} and marks["ms_ssim"] == {0} and "bytes" not in marks and "bpp" not in marks
    # Nothing matched: said, and no star anywhere.
    alone = [rows[0], rows[2]]
    assert "nothing to compare" in " ".join(verdict(alone).lines) and not any(stars(alone).values())
    assert "tick codecs" in verdict(rows[:1]).lines[0]


def test_verdict_at_the_same_quality_reads_in_bytes():
    from cycleapp.app.ui import results_html
    from cycleapp.evaluation.verdict import stars, verdict

    rows = [make_row("cycle", 1000, 33.00), make_row("jpeg", 2310, 33.05), make_row("avif", 970, 32.95),
            make_row("webp", 1500, 32.50, note="no setting within 0.15")]  # 0.5 dB short: not compared
    v = verdict(rows, "psnr")
    assert v.winners == {"bytes": ["avif"]} and v.missed == ["webp"]
    assert "AVIF needs 0.97x the bytes, JPEG 2.31x of CycleCodec." in v.lines
    assert "Smallest file: AVIF, 0.97x CycleCodec's bytes (970 against 1,000)." in v.lines
    assert "WebP (-0.50 dB)" in v.lines[-1]
    assert stars(rows, "psnr")["ratio"] == {2} and "psnr" not in stars(rows, "psnr")
    page = results_html(rows, "psnr")
    order = re.findall(r"<tr data-codec='(\w+)'", page)
    assert order == ["avif", "cycle", "jpeg", "webp"]  # ranked by bytes, the miss last
    assert "2.31×" in page and re.search(r"<tr data-codec='avif'.*?c-ratio best", page)
    # Ours the smallest: said so, with the next smallest's ratio.
    ours = verdict([rows[0], rows[1]], "psnr")
    assert ours.winners == {"bytes": ["cycle"]} and "the next smallest needs 2.31x its bytes" in ours.lines[-1]


def test_quality_match_reaches_the_target_or_says_why(photo):
    from cycleapp.evaluation import registry
    from cycleapp.evaluation.matching import QUALITY_TOLERANCE, match_quality
    from cycleapp.evaluation.metrics import psnr

    small = np.ascontiguousarray(photo[:96, :128])
    jpeg = registry.get("jpeg")
    target = psnr(small, jpeg.decode(jpeg.encode(small, 37))) + 0.04
    for name in ("jpeg", "jpeg2000"):  # an integer setting, and a rate bisected on its logarithm
        codec = registry.get(name)
        m = match_quality(codec, small, "psnr", target)
        assert m.within_tolerance and not m.note, (name, m.value, m.note)
        assert m.value == psnr(small, codec.decode(m.data))  # the file's own quality
        assert abs(m.value - target) <= QUALITY_TOLERANCE["psnr"]
    far = match_quality(jpeg, small, "psnr", 80.0)  # beyond JPEG at quality 100
    assert not far.within_tolerance and far.note.startswith("best is") and "80.00 dB" in far.note


class Counting:
    """A codec that counts its encodes (the rest is the codec's own)."""

    def __init__(self, codec):
        self.codec, self.encodes = codec, 0

    def __getattr__(self, name):
        return getattr(self.codec, name)

    def encode(self, rgb, setting=None):
        self.encodes += 1
        return self.codec.encode(rgb, setting)


def test_size_match_from_a_prediction_in_fewer_encodes(photo):
    """`match_bytes` (the app's size match) chooses as the core's bisection does (the same file
    within the same 3 %, the same notes for a miss), in fewer encodes."""
    from cycleapp.core.rate import match_size
    from cycleapp.evaluation import registry
    from cycleapp.evaluation.matching import match_bytes

    small = np.ascontiguousarray(photo[:256, :384])
    encodes = {"bisection": 0, "prediction": 0}
    for name in ("jpeg", "webp", "jpeg2000"):
        for target in (3000, 8000, 20000):
            old, new = Counting(registry.get(name)), Counting(registry.get(name))
            a, b = match_size(old, small, target), match_bytes(new, small, target)
            assert a.within_tolerance == b.within_tolerance and bool(a.note) == bool(b.note), (name, target)
            if a.within_tolerance:
                assert abs(len(b.data) - target) <= 0.03 * target
            else:
                assert len(a.data) == len(b.data) and a.note.split(" (")[0] == b.note.split(" (")[0], (a.note, b.note)
            encodes["bisection"] += old.encodes
            encodes["prediction"] += new.encodes
    assert encodes["prediction"] < 0.8 * encodes["bisection"], encodes  # JPEG 2000's search is the same
    miss = match_bytes(registry.get("jpeg"), small, 100)  # below JPEG's smallest file
    assert not miss.within_tolerance and miss.note.startswith("cannot go below")


def test_quality_match_from_a_prediction(photo):
    """At the same quality, the search starts where the reference file's size suggests and needs
    a few encodes (each decoded and measured), not a bisection's eight or nine."""
    from cycleapp.evaluation import registry
    from cycleapp.evaluation.matching import QUALITY_TOLERANCE, match_quality
    from cycleapp.evaluation.metrics import psnr

    small = np.ascontiguousarray(photo[:128, :192])
    webp = registry.get("webp")
    target = psnr(small, webp.decode(webp.encode(small, 40))) + 0.05
    codec = Counting(registry.get("avif"))
    m = match_quality(codec, small, "psnr", target, near_bpp=8 * len(webp.encode(small, 40)) / small[..., 0].size)
    assert m.within_tolerance and abs(m.value - target) <= QUALITY_TOLERANCE["psnr"] and codec.encodes <= 6


def test_compare_at_the_same_quality_in_parallel(photo, ckpt):
    from cycleapp.core.learned import CycleCodec
    from cycleapp.evaluation.compare import compare
    from cycleapp.evaluation.matching import QUALITY_TOLERANCE

    small = np.ascontiguousarray(photo[:96, :128])
    lines = []
    one = compare(small, CycleCodec(ckpt), ["jpeg", "jpeg2000"], "psnr")
    two = compare(small, CycleCodec(ckpt), ["jpeg", "jpeg2000"], "psnr", workers=2, report=lines.append)
    assert [r.codec for r in two] == ["cycle", "jpeg", "jpeg2000"]
    assert [r.data for r in one] == [r.data for r in two]  # threads change the times, not the files
    for r in two[1:]:
        assert abs(r.psnr - two[0].psnr) <= QUALITY_TOLERANCE["psnr"] or r.note
    assert lines[0].startswith("Compressing with CycleCodec") and "0 of 2 codecs done" in lines[1]
    assert any("to the same PSNR" in line for line in lines)
    with pytest.raises(ValueError, match="MS-SSIM needs an image of at least 161 pixels"):
        compare(small, CycleCodec(ckpt), ["jpeg"], "ms_ssim")


def test_a_rerun_reuses_what_was_measured(photo, ckpt):
    """The same image with one more codec: the first codecs' measurements are reused (the very
    objects), the new one measured; a bound of 0 bytes keeps nothing."""
    from cycleapp.core.learned import CycleCodec
    from cycleapp.evaluation.compare import Kept, compare

    small = np.ascontiguousarray(photo[:96, :128])
    kept = Kept()
    first = compare(small, CycleCodec(ckpt), ["jpeg"], kept=kept)
    again = compare(small, CycleCodec(ckpt), ["jpeg", "webp"], kept=kept)
    assert again[0] is first[0] and again[1] is first[1] and again[2].codec == "webp"
    other = small.copy()
    other[0, 0] ^= 1  # another image: nothing reused
    assert compare(other, CycleCodec(ckpt), ["jpeg"], kept=kept)[1] is not first[1]
    tiny = Kept(max_bytes=0)
    assert compare(small, CycleCodec(ckpt), ["jpeg"], kept=tiny)[1] is not compare(small, CycleCodec(ckpt), ["jpeg"],
                                                                                    kept=tiny)[1]


def test_progress_steps_relay_lines_then_the_result_or_the_error():
    from cycleapp.app.ui import progress_steps

    def work(report):
        report("one")
        report("two")
        return 42

    steps = progress_steps(work, str.upper)
    assert [next(steps), next(steps)] == ["ONE", "TWO"]
    with pytest.raises(StopIteration) as stop:
        next(steps)
    assert stop.value.value == 42

    def broken(report):
        report("starting")
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        list(progress_steps(broken, str))


def test_messages_carry_no_server_paths(tmp_path):
    from cycleapp.app.ui import UserError, clean_message, read_upload

    fake = tmp_path / "notes.png"
    fake.write_text("text")
    with pytest.raises(UserError) as err:
        read_upload(fake)
    assert "notes.png" in str(err.value) and str(tmp_path) not in str(err.value) and "/" not in str(err.value)
    assert clean_message(f"cannot read image {tmp_path}/a b.png: broken", f"{tmp_path}/a b.png") == \
        "cannot read image 'a b.png': broken"
    assert "/" not in clean_message("no such file: /srv/data/x.png")


def test_transparency_is_said(tmp_path):
    from cycleapp.app.ui import read_upload

    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 3] = 100
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    Image.fromarray(rgba[..., :3]).save(tmp_path / "opaque.png")
    rgb, note = read_upload(tmp_path / "alpha.png")
    assert "transparency was composited onto white" in note and (rgb > 0).all()
    assert read_upload(tmp_path / "opaque.png")[1] == ""


@pytest.mark.parametrize("shape", [(160, 125, 1), (160, 1, 125), (160, 32, 48), (160, 1, 1), (16, 2000, 3)])
def test_code_view_is_bounded_for_any_aspect_ratio(shape):
    from cycleapp.app.ui import CODE_VIEW_MAX, code_mosaic

    code = np.random.default_rng(0).integers(-3, 4, shape)
    img = code_mosaic(code)
    assert max(img.shape) <= CODE_VIEW_MAX and min(img.shape) >= 3
    if shape[1:] == (125, 1):  # a 3x2000 strip's code: the channels side by side, each enlarged
        assert img.shape[1] >= 64 and img.shape[0] <= CODE_VIEW_MAX


def test_error_map_is_exact_and_lossless(tmp_path):
    from cycleapp.app.inspector import ERROR_FULL_SCALE, error_levels, save_error_map

    a = np.full((4, 5, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0, 1] = 101
    b[1, 1] = [100, 100, 100 + ERROR_FULL_SCALE]
    b[2, 2, 0] = 0
    levels = error_levels(a, b)
    assert levels[3, 3] == 0 and 0 < levels[0, 0] < 16 and levels[1, 1] == 255 and levels[2, 2] == 255
    path = save_error_map(a, b, tmp_path / "err.png")
    assert np.array_equal(np.array(Image.open(path)), levels)  # palette indices = levels, PNG
    # every pair of 8-bit values, and the largest of three channels, as the 32-bit formula says
    x, y = (v.astype(np.uint8) for v in np.meshgrid(np.arange(256), np.arange(256)))
    rng = np.random.default_rng(0)
    a, b = np.stack([x, y, rng.integers(0, 256, x.shape, np.uint8)], 2), np.stack([y, x, x], 2)
    formula = (np.abs(a.astype(int) - b.astype(int)).max(axis=2) * 255 + ERROR_FULL_SCALE // 2) // ERROR_FULL_SCALE
    assert np.array_equal(error_levels(a, b), np.minimum(formula, 255))


def stars_of(fig) -> list[tuple[float, float]]:
    return [tuple(map(float, line.get_xydata()[0])) for line in fig.axes[0].lines if line.get_marker() == "*"]


def test_rd_plot_says_what_it_was_computed_on(photo):
    """On the image itself the stars are the table's files (the numbers are the table's); on a
    downscaled copy the table's CycleCodec file (its code size and steps, as a target size chose
    them) is made again on the copy and starred there, and the plot says so. The bpp axis is
    logarithmic, a quarter to four times the starred file's bpp."""
    from cycleapp.app.rdplot import PLOT_PIXELS, Plots, learned_file, rd_plot
    from cycleapp.app.ui import downscale
    from cycleapp.core import learned
    from cycleapp.evaluation.measure import measure

    plots = Plots()
    entry = learned.by_name("tiny")
    made = (entry, 5)  # steps moved, as a target size would
    assert learned_file(entry.describe(5)) == made and "steps x" in entry.describe(5)
    assert learned_file("lossless")[0].variant in (learned.LAYERED, learned.LOSSLESS)
    big = np.repeat(np.repeat(photo[:256, :384], 2, axis=0), 2, axis=1)  # 768x512: plotted as it is
    table = measure(entry, big, 5)
    fig = rd_plot(big, ["jpeg"], made, {"cycle": (table.bpp, table.psnr), "jpeg": (0.5, 30.0)}, plots)
    texts = " ".join(t.get_text() for t in fig.texts)
    assert "Computed on this image (768x512): the numbers are the table's" in texts
    assert stars_of(fig) == [(table.bpp, table.psnr), (0.5, 30.0)]
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and np.allclose(ax.get_xlim(), (table.bpp / 4, table.bpp * 4))
    bigger = np.repeat(np.repeat(photo, 2, axis=0), 2, axis=1)  # 1536x1024: a downscaled copy
    fig = rd_plot(bigger, ["jpeg"], made, {"cycle": (table.bpp, table.psnr)}, plots)
    texts = " ".join(t.get_text() for t in fig.texts)
    assert "downscaled from 1536x1024" in texts and "made again on this copy" in texts
    w, h = map(int, re.search(r"on a (\d+)x(\d+) copy", texts).groups())
    assert w * h <= PLOT_PIXELS
    again = measure(entry, downscale(bigger, PLOT_PIXELS), 5)
    assert stars_of(fig) == [(again.bpp, again.psnr)]  # the same file, on the pixels plotted
    # The words under the plot cover neither its title nor its axis label (a phone shows the
    # figure scaled down as a whole, so what is clear here is clear there).
    fig.canvas.draw()
    ax = fig.axes[0]
    for words in fig.texts:
        box = words.get_window_extent()
        assert not box.overlaps(ax.title.get_window_extent()) and not box.overlaps(ax.xaxis.label.get_window_extent())


def test_a_plot_waits_while_a_table_is_being_made(photo):
    """Tables first: a plot started during a comparison measures no point until it ends."""
    import threading
    import time

    from cycleapp.app.rdplot import Plots

    plots = Plots()
    small = np.ascontiguousarray(photo[:64, :96])
    done = threading.Event()
    with plots.making_a_table():
        plot = threading.Thread(target=lambda: (plots.curve("jpeg", small, "wait-test"), done.set()))
        plot.start()
        time.sleep(1.0)
        assert not done.is_set()  # a point of JPEG on 96x64 takes milliseconds
    plot.join(timeout=60)
    assert done.is_set() and len(plots.curve("jpeg", small, "wait-test")) > 1
    assert Plots().curve("jpeg", small, "wait-test") is not plots.curve("jpeg", small, "wait-test")  # one per app


# ---- bounded output: the run folders and Gradio's cache -------------------------------------

def last(steps):
    """The final answer of /compare's generator (what an API client gets)."""
    *_, answer = steps
    return answer


def make_run(root, name, size, age):
    import os
    import time

    folder = root / f"run-{name}"
    folder.mkdir()
    (folder / "f.png").write_bytes(b"x" * size)
    t = time.time() - age
    os.utime(folder, (t, t))
    return folder


def test_run_folders_oldest_first_never_young_refuse_rather_than_pass_the_cap(tmp_path):
    from cycleapp.app.outputs import Busy, RunFolders

    runs = RunFolders(tmp_path, cap=1000, min_age=60, max_age=3600)
    expired = make_run(tmp_path, "expired", 10, 4000)
    shown_old = make_run(tmp_path, "shown-old", 300, 900)
    old = make_run(tmp_path, "old", 300, 600)
    newer = make_run(tmp_path, "newer", 300, 300)
    runs._shown["page"] = shown_old.name  # an open page still shows it
    with runs.run(300) as a:  # 900 + 300 > 1000: one folder goes, the oldest not shown
        (a / "f.png").write_bytes(b"x" * 300)
    assert not expired.exists() and not old.exists() and shown_old.exists() and newer.exists()
    assert runs.usage() == 900
    with runs.run(650):  # then what a page shows; never the young one
        pass
    assert not newer.exists() and not shown_old.exists() and a.exists() and "page" not in runs._shown
    # Only folders younger than min_age left: refused, and nothing deleted.
    young = [make_run(tmp_path, f"young{i}", 300, 5) for i in range(3)]
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(Busy):
        with runs.run(400):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == before and all(y.exists() for y in young)
    # A run that succeeds is its session's shown run until the session runs again or closes; one
    # that fails leaves no folder.
    runs = RunFolders(tmp_path / "other", cap=1000)
    with runs.run(10, "page") as ok:
        pass
    assert runs._shown["page"] == ok.name
    with pytest.raises(RuntimeError):
        with runs.run(10, "page") as failed:
            raise RuntimeError
    assert not failed.exists() and ok.exists() and "page" not in runs._shown
    with runs.run(10, "page") as again:
        pass
    runs.closed("page")
    assert again.exists() and "page" not in runs._shown


def test_compare_output_stays_under_its_cap(tmp_path, monkeypatch, photo):
    """N runs through the app's own function: the folder never passes its cap, the latest results
    are all there, the estimate of a run's size holds (on noise, which PNG cannot compress), and a
    run that cannot fit is refused with a message."""
    import gradio as gr

    import app
    from cycleapp.app.outputs import RunFolders, folder_bytes, run_bytes

    assert app.build().delete_cache == (600, app.RESULT_AGE)  # Gradio's cache: uploads, served files
    rng = np.random.default_rng(0)
    images = []
    for i in range(3):
        path = tmp_path / f"in{i}.png"
        Image.fromarray(photo[:96, i * 96:i * 96 + 128] if i < 2 else
                        rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(path)
        images.append(path)
    one_run = run_bytes(np.zeros((96, 128, 3)), 2)
    root = tmp_path / "out"
    cap = one_run + 100_000  # the estimate is an upper bound: each run writes a third of it or less
    state = app.App(RunFolders(root, cap=cap, min_age=0))
    request = gr.Request(session_hash="visitor")
    written = []
    for i in range(8):
        out = last(state.run_compare(str(images[i % 3]), "tiny", ["jpeg", "webp"], None, "size", request))
        written.append(folder_bytes(Path(out[2]).parent))
        assert written[-1] <= one_run
        assert state.runs.usage() <= cap
        for path in [out[2], *out[3], *out[7], *re.findall(r"gradio_api/file=([^\"]+?\.png)", html.unescape(out[5]))]:
            assert Path(path).is_file(), path
    assert sum(written) > cap and len(list(root.iterdir())) < 8  # it had to delete, and did
    state = app.App(RunFolders(root, cap=one_run // 2, min_age=0))
    with pytest.raises(gr.Error, match="busy"):
        last(state.run_compare(str(images[0]), "tiny", ["jpeg", "webp"], None, "size", request))
    assert "busy" in state.errors.pop("visitor")  # for the status area, in this app's own record


def test_rd_plot_api_refuses_a_malformed_table(client, tmp_path):
    """/rd_plot with a table that is not /compare's: a message saying what is wrong (no paths);
    a good table still gives the plot."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    small = tmp_path / "small.png"
    Image.open(EXAMPLES / "kodim23.png").convert("RGB").crop((0, 0, 128, 96)).save(small)
    headers = ["codec", "setting", "bytes", "bpp", "psnr", "ssim", "ms_ssim", "encode_ms", "decode_ms", "note"]
    good = ["cycle", "tiny", 400, 0.26, 30.5, 0.9, 0.95, 5.0, 5.0, ""]
    for data, heads, expected in [([[*good[:3], "abc", *good[4:]]], headers, "Row 1 .* no usable bpp"),
                                  ([good, ["jpeg", "q"]], headers, "Row 2 .* 10 columns"),
                                  ([["gif", *good[1:]]], headers, "unknown codec"),
                                  ([good], headers[:3], "no bpp, psnr column"),
                                  ([[*good[:1], "gigantic", *good[2:]]], headers, "setting that CycleCodec does not make"),
                                  ([["jpeg", *good[1:]]], headers, "first row")]:
        with pytest.raises(AppError, match=expected) as err:
            client.predict(handle_file(str(small)), "tiny", ["jpeg"], {"headers": heads, "data": data},
                           api_name="/rd_plot")
        assert "/" not in str(err.value), err.value
    with pytest.raises(AppError, match="Unknown codec.*gif"):
        client.predict(handle_file(str(small)), "tiny", ["gif"], None, api_name="/rd_plot")
    plot = client.predict(handle_file(str(small)), "tiny", ["jpeg"], {"headers": headers, "data": [good]},
                          api_name="/rd_plot")
    assert plot and plot.get("type") == "matplotlib"
