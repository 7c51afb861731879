"""The app's /compare API, driven by gradio_client as a script would."""
import html
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app_server import running_app
from conftest import EXAMPLES, run_cli


@pytest.fixture(scope="module")
def client():
    from gradio_client import Client

    with running_app() as url:
        yield Client(url, verbose=False)


def call(client, path, size, codecs, target_kb=None):
    """/compare as a script calls it: three inputs (the original contract), or four with a target."""
    from gradio_client import handle_file

    if target_kb is None:
        return client.predict(handle_file(str(path)), size, codecs, api_name="/compare")
    return client.predict(handle_file(str(path)), size, codecs, target_kb, api_name="/compare")


@pytest.fixture(scope="module")
def middle_size():
    from cycleapp import checkpoint

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


def test_compare_api_rejects_bad_input(client, ckpt, tmp_path):
    from gradio_client.exceptions import AppError

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
        with pytest.raises(AppError, match=expected) as err:
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
    from cycleapp.ui import UserError, resolve_size

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

def test_table_formats_units_and_best_values():
    from cycleapp.ui import MAIN_COLUMNS, TABLE, results_html, success_lines

    rows = [{"codec": "cycle", "setting": "medium", "bytes": 1000, "bpp": 0.25, "psnr": 33.0, "ssim": 0.9,
             "ms_ssim": 0.95, "encode_ms": 50.0, "decode_ms": 60.0, "note": ""},
            {"codec": "jpeg", "setting": "quality 20", "bytes": 1010, "bpp": 0.2525, "psnr": 31.5, "ssim": None,
             "ms_ssim": None, "encode_ms": 2.0, "decode_ms": 1.0, "note": "cannot go below 1010 bytes"},
            {"codec": "webp", "setting": "quality 30", "bytes": 1200, "bpp": 0.3, "psnr": 32.0, "ssim": 0.8,
             "ms_ssim": 0.9, "encode_ms": 9.0, "decode_ms": 3.0, "note": "largest file is 1200 bytes"}]
    page = results_html(rows)
    assert ">33.00<" in page and "n/a" in page  # fixed decimals, missing metrics said so
    assert [k for k, *_ in TABLE][:len(MAIN_COLUMNS)] == MAIN_COLUMNS  # the columns a phone shows first
    assert "dB" in page and "bits/pixel" in page  # units in the headers
    best = re.findall(r"<td class='c-(\w+) best'", page)
    assert sorted(best) == sorted(["bytes", "bpp", "psnr", "ms_ssim", "ssim", "encode_ms", "decode_ms"])
    lines = success_lines(rows, "", 1.0)
    assert lines[1] == "JPEG: cannot go below 1010 bytes" and lines[2] == "WebP: largest file is 1200 bytes"


def test_messages_carry_no_server_paths(tmp_path):
    from cycleapp.ui import UserError, clean_message, read_upload

    fake = tmp_path / "notes.png"
    fake.write_text("text")
    with pytest.raises(UserError) as err:
        read_upload(fake)
    assert "notes.png" in str(err.value) and str(tmp_path) not in str(err.value) and "/" not in str(err.value)
    assert clean_message(f"cannot read image {tmp_path}/a b.png: broken", f"{tmp_path}/a b.png") == \
        "cannot read image 'a b.png': broken"
    assert "/" not in clean_message("no such file: /srv/data/x.png")


@pytest.mark.parametrize("shape", [(160, 125, 1), (160, 1, 125), (160, 32, 48), (160, 1, 1), (16, 2000, 3)])
def test_code_view_is_bounded_for_any_aspect_ratio(shape):
    from cycleapp.ui import CODE_VIEW_MAX, code_mosaic

    code = np.random.default_rng(0).integers(-3, 4, shape)
    img = code_mosaic(code)
    assert max(img.shape) <= CODE_VIEW_MAX and min(img.shape) >= 3
    if shape[1:] == (125, 1):  # a 3x2000 strip's code: the channels side by side, each enlarged
        assert img.shape[1] >= 64 and img.shape[0] <= CODE_VIEW_MAX


def test_error_map_is_exact_and_lossless(tmp_path):
    from cycleapp.inspector import ERROR_FULL_SCALE, error_levels, save_error_map

    a = np.full((4, 5, 3), 100, np.uint8)
    b = a.copy()
    b[0, 0, 1] = 101
    b[1, 1] = [100, 100, 100 + ERROR_FULL_SCALE]
    b[2, 2, 0] = 0
    levels = error_levels(a, b)
    assert levels[3, 3] == 0 and 0 < levels[0, 0] < 16 and levels[1, 1] == 255 and levels[2, 2] == 255
    path = save_error_map(a, b, tmp_path / "err.png")
    assert np.array_equal(np.array(Image.open(path)), levels)  # palette indices = levels, PNG


def test_rd_plot_says_what_it_was_computed_on(photo):
    from cycleapp.rdplot import PLOT_PIXELS, rd_plot

    big = np.repeat(np.repeat(photo[:256, :384], 2, axis=0), 2, axis=1)  # 768x512: plotted as it is
    texts = " ".join(t.get_text() for t in rd_plot(big, ["jpeg"], "tiny").texts)
    assert "Computed on this image (768x512)" in texts
    bigger = np.repeat(np.repeat(photo, 2, axis=0), 2, axis=1)  # 1536x1024: a downscaled copy
    fig = rd_plot(bigger, ["jpeg"], "tiny")
    texts = " ".join(t.get_text() for t in fig.texts)
    assert "downscaled from 1536x1024" in texts
    w, h = map(int, re.search(r"on a (\d+)x(\d+) copy", texts).groups())
    assert w * h <= PLOT_PIXELS


def test_a_plot_waits_while_a_table_is_being_made(photo):
    """Tables first: a plot started during a comparison measures no point until it ends."""
    import threading
    import time

    from cycleapp import rdplot

    small = np.ascontiguousarray(photo[:64, :96])
    done = threading.Event()
    with rdplot.making_a_table():
        plot = threading.Thread(target=lambda: (rdplot.curve("jpeg", small, "wait-test"), done.set()))
        plot.start()
        time.sleep(1.0)
        assert not done.is_set()  # a point of JPEG on 96x64 takes milliseconds
    plot.join(timeout=60)
    assert done.is_set() and len(rdplot.curve("jpeg", small, "wait-test")) > 1


# ---- bounded output: the run folders and Gradio's cache -------------------------------------

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
    from cycleapp.outputs import Busy, RunFolders

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
    from cycleapp.outputs import RunFolders, folder_bytes, run_bytes

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
    monkeypatch.setattr(app, "RUNS", RunFolders(root, cap=cap, min_age=0))
    request = gr.Request(session_hash="visitor")
    written = []
    for i in range(8):
        out = app.run_compare(str(images[i % 3]), "tiny", ["jpeg", "webp"], None, request)
        written.append(folder_bytes(Path(out[2]).parent))
        assert written[-1] <= one_run
        assert app.RUNS.usage() <= cap
        for path in [out[2], *out[3], *re.findall(r"gradio_api/file=([^\"]+?\.png)", html.unescape(out[5]))]:
            assert Path(path).is_file(), path
    assert sum(written) > cap and len(list(root.iterdir())) < 8  # it had to delete, and did
    monkeypatch.setattr(app, "RUNS", RunFolders(root, cap=one_run // 2, min_age=0))
    with pytest.raises(gr.Error, match="busy"):
        app.run_compare(str(images[0]), "tiny", ["jpeg", "webp"])


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
                                  ([[*good[:1], "gigantic", *good[2:]]], headers, "Unknown code size"),
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
