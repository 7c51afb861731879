"""The app's /compare API, driven by gradio_client as a script would."""
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


def call(client, path, size, codecs):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), size, codecs, api_name="/compare")


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
    # And the slider shows those same pixels (PNG, not a lossy re-encoding).
    slider = out[4]
    slider_value = slider["value"] if isinstance(slider, dict) and "value" in slider else slider
    after = slider_value[1] if not isinstance(slider_value[1], dict) else slider_value[1]["path"]
    assert np.array_equal(np.array(Image.open(after)), served)
    assert np.array_equal(np.array(Image.open(slider_value[0] if not isinstance(slider_value[0], dict)
                                              else slider_value[0]["path"])),
                          np.array(Image.open(EXAMPLES / "kodim23.png").convert("RGB")))
    for path, r in zip(recon_paths, rows):
        assert path.endswith(f"{r['codec']}.png")


def test_compare_api_rejects_bad_input(client, ckpt, tmp_path):
    from gradio_client.exceptions import AppError

    fake = tmp_path / "fake.png"
    fake.write_text("this is text, not an image")
    with pytest.raises(AppError, match="Could not read"):
        call(client, fake, ckpt.name, ["jpeg"])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(AppError, match="empty"):
        call(client, empty, ckpt.name, ["jpeg"])
    with pytest.raises(AppError, match="gigantic"):
        call(client, EXAMPLES / "kodim23.png", "gigantic", ["jpeg"])


def test_huge_image_is_downscaled_with_a_note(client, ckpt, tmp_path):
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1700, 2600, 3), dtype=np.uint8)).save(big)
    status, table = call(client, big, ckpt.name, ["jpeg"])[:2]
    assert "downscaled" in status
    rows = [dict(zip(table["headers"], r)) for r in table["data"]]
    assert [r["codec"] for r in rows] == ["cycle", "jpeg"]
    # Matched within 3 %, or the row says why not: never a silent mismatch.
    assert abs(rows[1]["bytes"] - rows[0]["bytes"]) <= 0.03 * rows[0]["bytes"] or rows[1]["note"]
