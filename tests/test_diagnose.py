"""train.diagnose: its bit shares add up to the real file, and its ceilings are ordered."""
import numpy as np
import pytest

from conftest import EXAMPLES
from train.diagnose import ACTIVITY_NAMES, diagnose, error_by_activity, main


def test_shares_add_up_to_the_file_and_the_ceiling_is_above_the_file(ckpt, photo):
    row = diagnose(ckpt, photo)
    parts = [v for k, v in row.items() if k in ("table moves", "dc") or k.endswith(("first pass", "later passes"))]
    assert abs(row["header"] + sum(parts) - row["bpp"]) < 0.01 * row["bpp"]  # ideal bits ~ the real payload
    assert 0.98 < row["coder"] < 1.02
    assert row["psnr unquantised"] > row["psnr"] > 20
    assert 0 < row["zeros"] < 1


def test_error_by_activity_covers_every_block(ckpt, photo):
    classes = error_by_activity(ckpt, "jpeg2000", photo)
    assert list(classes) == list(ACTIVITY_NAMES)
    assert sum(n for n, _, _ in classes.values()) == (photo.shape[0] // 16) * (photo.shape[1] // 16)
    flat, busy = classes[ACTIVITY_NAMES[0]], classes[ACTIVITY_NAMES[-1]]
    assert busy[1] / busy[0] > flat[1] / max(flat[0], 1)  # busy blocks carry more error per block
    assert all(np.isfinite(v).all() for v in classes.values())


def test_bad_input_is_one_line(tmp_path):
    """An unknown codec or code size, a folder without images: the command stops with one
    `error:` line (its SystemExit, run in this process), before any work."""
    for args, why in ((["--versus", "gif", str(EXAMPLES)], "unknown codec gif"), ([str(tmp_path)], "no images in"),
                      (["--sizes", "gigantic", str(EXAMPLES)], "unknown code size gigantic")):
        with pytest.raises(SystemExit) as stopped:
            main(args)
        message = str(stopped.value.code)
        assert message.startswith(f"error: {why}") and "\n" not in message, message
