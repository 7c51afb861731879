"""The command line as a user meets it: real files, and one clear line for every bad input.

Most tests run the command line's `main` in this process (no interpreter and torch to start each
time), its output read from file descriptors 1 and 2, so that what a C library prints counts too;
test_encode_decode_files and test_a_bad_input_exits_with_status_1_and_one_line run it as a user
does, `python -m cycleapp`, for the exit status and stderr of a real process."""
import subprocess
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import EXAMPLES, run_cli
from cycleapp.__main__ import main


@pytest.fixture
def cli(capfd):
    """`python -m cycleapp ARGS` run in this process: a CompletedProcess as run_cli's, with every
    warning raised meanwhile shown on its stderr (as Python shows it to a user)."""
    def run(*args):
        capfd.readouterr()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", hidden)  # as Python's default filters hide them from a user
            status = main([str(a) for a in args])
        out, err = capfd.readouterr()
        err += "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught)
        return subprocess.CompletedProcess(args, status, out, err)
    return run


def test_sizes_lists_names_first(cli):
    out = cli("sizes")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    from cycleapp.core import checkpoint
    names = [p.stem for p in checkpoint.available()]  # the code sizes first (the layered modes follow)
    assert len(names) >= 5 and [line.split()[0] for line in lines[:len(names)]] == names
    assert all("bpp" in line for line in lines[:len(names)])


def test_encode_decode_files(tmp_path, ckpt):
    cyc, png = tmp_path / "a.cyc", tmp_path / "a.png"
    out = run_cli("encode", EXAMPLES / "kodim23.png", cyc, "--code-size", ckpt.name)
    assert out.returncode == 0, out.stderr
    size = cyc.stat().st_size
    assert f"{size} bytes" in out.stdout and f"{8 * size / (768 * 512):.4f} bpp" in out.stdout
    assert run_cli("decode", cyc, png).returncode == 0
    from cycleapp.core import codec
    from cycleapp.imageio import load_rgb
    assert np.array_equal(np.array(Image.open(png)), codec.reconstruct(ckpt, load_rgb(EXAMPLES / "kodim23.png")))


def test_compare_prints_one_table(cli, ckpt):
    out = cli("compare", EXAMPLES / "kodim23.png", "--code-size", ckpt.name, "--codecs", "jpeg,jpeg2000")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split()[:8] == ["codec", "setting", "bytes", "bpp", "psnr", "ssim", "ms_ssim", "encode_ms"]
    assert [line.split()[0] for line in lines[1:]] == ["cycle", "jpeg", "jpeg2000"]


def test_compare_small_image_says_na(cli, tmp_path, ckpt):
    Image.new("RGB", (40, 30), (120, 40, 200)).save(tmp_path / "s.png")
    out = cli("compare", tmp_path / "s.png", "--code-size", ckpt.name, "--codecs", "jpeg2000")
    assert out.returncode == 0, out.stderr
    assert "n/a" in out.stdout.splitlines()[1]


def bad_inputs(cli, tmp_path, ckpt):
    good = tmp_path / "good.cyc"
    assert cli("encode", EXAMPLES / "kodim23.png", good, "--code-size", ckpt.name).returncode == 0
    data = good.read_bytes()
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    (tmp_path / "trunc.cyc").write_bytes(data[: len(data) // 2])
    corrupt = bytearray(data)
    corrupt[100] ^= 0xFF
    (tmp_path / "corrupt.cyc").write_bytes(bytes(corrupt))
    (tmp_path / "foreign.cyc").write_bytes((EXAMPLES / "kodim23.png").read_bytes())
    (tmp_path / "empty.cyc").write_bytes(b"")
    img = EXAMPLES / "kodim23.png"
    return {
        "missing input": ("encode", tmp_path / "nope.png", tmp_path / "o1.cyc", "--code-size", ckpt.name),
        "unreadable image": ("encode", fake, tmp_path / "o2.cyc", "--code-size", ckpt.name),
        "unknown code size": ("encode", img, tmp_path / "o3.cyc", "--code-size", "gigantic"),
        "unwritable output": ("encode", img, tmp_path / "no" / "such" / "dir" / "o4.cyc", "--code-size", ckpt.name),
        "output is a directory": ("decode", good, tmp_path),
        "truncated cyc": ("decode", tmp_path / "trunc.cyc", tmp_path / "o5.png"),
        "corrupted cyc": ("decode", tmp_path / "corrupt.cyc", tmp_path / "o6.png"),
        "foreign file": ("decode", tmp_path / "foreign.cyc", tmp_path / "o7.png"),
        "empty cyc": ("decode", tmp_path / "empty.cyc", tmp_path / "o8.png"),
        "missing cyc": ("decode", tmp_path / "nope.cyc", tmp_path / "o9.png"),
        "compare unknown codec": ("compare", img, "--code-size", ckpt.name, "--codecs", "gif"),
    }


def test_bad_input_one_line_nonzero_no_output(cli, tmp_path, ckpt):
    cases = bad_inputs(cli, tmp_path, ckpt)
    before = set(tmp_path.rglob("*"))
    for label, args in cases.items():
        out = cli(*args)
        assert out.returncode == 1, label
        err = out.stderr.strip()
        assert err.startswith("error: ") and len(err.splitlines()) == 1, (label, err)
        assert "Traceback" not in out.stderr, label
    assert set(tmp_path.rglob("*")) == before  # nothing written, not even a partial file


def test_a_bad_input_exits_with_status_1_and_one_line(tmp_path, ckpt):
    """As a user meets it, in a process of its own: exit status 1, one `error:` line on stderr,
    nothing on stdout, no file written."""
    (tmp_path / "corrupt.cyc").write_bytes(b"CYC" + bytes(60))
    for args in (("encode", tmp_path / "nope.png", tmp_path / "o.cyc", "--code-size", ckpt.name),
                 ("decode", tmp_path / "corrupt.cyc", tmp_path / "o.png")):
        out = run_cli(*args)
        assert out.returncode == 1 and out.stdout == "", args
        assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith("error: "), out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.cyc"]


def test_outputs_follow_the_users_umask(cli, tmp_path, ckpt):
    """encode and decode write files as any program would: 0666 less the umask (not mkstemp's 0600)."""
    import os

    old = os.umask(0o022)  # the process's: what the command line reads
    try:
        assert cli("encode", EXAMPLES / "kodim23.png", tmp_path / "a.cyc", "--code-size", ckpt.name).returncode == 0
        assert cli("decode", tmp_path / "a.cyc", tmp_path / "a.png").returncode == 0
        os.umask(0o027)
        from cycleapp.imageio import write_atomic
        write_atomic(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"a.cyc": 0o644, "a.png": 0o644, "b.bin": 0o640}


def test_hostile_images_give_one_line_naming_the_file(cli, tmp_path, ckpt, photo):
    """Damaged AVIF and HEIC files, a width the .cyc format cannot hold, an image too large for
    compare: `error: cannot read FILE: reason`, exit status 1, nothing written."""
    from test_imageio import heif_family_file, png

    cases = {
        "damaged avif": ("encode", heif_family_file(tmp_path, photo, "AVIF", "flip")),
        "damaged heic": ("encode", heif_family_file(tmp_path, photo, "HEIF", "cut")),
        "too wide": ("encode", png(tmp_path / "wide.png", 1_048_561, 1)),
        "too large for compare": ("compare", png(tmp_path / "large.png", 4001, 4000)),
    }
    before = set(tmp_path.rglob("*"))
    for label, (command, path) in cases.items():
        output = [tmp_path / "out.cyc"] if command == "encode" else []
        out = cli(command, path, *output, "--code-size", ckpt.name)
        err = out.stderr.strip()
        assert out.returncode == 1 and "Traceback" not in out.stderr, (label, out.stderr)
        assert len(err.splitlines()) == 1 and err.startswith(f"error: cannot read {path}: "), (label, err)
    assert set(tmp_path.rglob("*")) == before
    assert "over the limit of 16,000,000 for compare (encode takes up to 100,000,000)" in err


def test_compare_reports_sizes_a_codec_refuses_in_the_table(cli, tmp_path, ckpt, noise_image):
    """x265 cannot encode a 5000x1 picture: the HEIF row says so in its note; JPEG of a 2x5000
    picture is matched with nothing printed by libjpeg."""
    Image.fromarray(noise_image(1, 5000)).save(tmp_path / "row.png")
    out = cli("compare", tmp_path / "row.png", "--code-size", ckpt.name, "--codecs", "heif,jpeg")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert rows["heif"].split()[1:9] == ["n/a"] * 8 and "cannot encode a 5000x1 image" in rows["heif"]
    assert "n/a" not in rows["jpeg"].split()[2:5]
    Image.fromarray(noise_image(5000, 2)).save(tmp_path / "column.png")
    out = cli("compare", tmp_path / "column.png", "--code-size", ckpt.name, "--codecs", "jpeg")
    assert out.returncode == 0 and out.stderr == "", out.stderr


def test_notes_and_silence_on_stderr(cli, tmp_path, ckpt):
    """An animated GIF: its first frame is encoded and one `note:` line says so. A float TIFF with
    NaN and infinities: encoded with nothing on stderr (no numpy warning)."""
    frames = [Image.new("RGB", (24, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    out = cli("encode", tmp_path / "anim.gif", tmp_path / "anim.cyc", "--code-size", ckpt.name)
    assert out.returncode == 0 and out.stderr.splitlines() == [
        f"note: {tmp_path / 'anim.gif'}: the file is animated or has several pages; only its first frame is used"]
    values = np.linspace(0, 1, 24 * 16, dtype=np.float32).reshape(16, 24)
    values[0, :3] = np.nan, np.inf, -np.inf
    Image.fromarray(values, "F").save(tmp_path / "float.tif")
    out = cli("encode", tmp_path / "float.tif", tmp_path / "float.cyc", "--code-size", ckpt.name)
    assert out.returncode == 0 and out.stderr == "", out.stderr
