"""The Python API (cycleapp.encode / decode) and the Pillow plug-in for .cyc files."""
import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import cycleapp
from cycleapp.core import codec
from conftest import EXAMPLES


def test_api_takes_pil_images_and_numpy_arrays(ckpt, photo):
    reference = codec.encode(ckpt, photo)
    with Image.open(EXAMPLES / "kodim23.png") as img:
        assert cycleapp.encode(img, code_size=ckpt.name) == reference
    assert cycleapp.encode(photo, code_size=ckpt.name) == reference
    assert np.array_equal(cycleapp.decode(reference), codec.reconstruct(ckpt, photo))
    gray = photo[:40, :50, 0]
    assert np.array_equal(cycleapp.decode(cycleapp.encode(gray, ckpt.name))[..., 1],
                          cycleapp.decode(cycleapp.encode(np.stack([gray] * 3, -1), ckpt.name))[..., 1])
    rgba = np.dstack([photo[:16, :16], np.zeros((16, 16), np.uint8)])  # transparent: white, as the CLI
    white = np.full((16, 16, 3), 255, np.uint8)
    assert cycleapp.encode(rgba, ckpt.name) == cycleapp.encode(white, ckpt.name)


def test_api_refuses_what_is_not_an_image(ckpt):
    with pytest.raises(TypeError, match="PIL image or a numpy array"):
        cycleapp.encode("photo.png", ckpt.name)
    with pytest.raises(ValueError, match="uint8 array"):
        cycleapp.encode(np.zeros((4, 4, 3), np.float32), ckpt.name)
    with pytest.raises(ValueError, match="unknown code size"):
        cycleapp.encode(np.zeros((4, 4, 3), np.uint8), "gigantic")
    with pytest.raises(TypeError, match="bytes of a .cyc file"):
        cycleapp.decode("photo.cyc")


def test_pillow_opens_and_saves_cyc(ckpt, photo, tmp_path):
    cycleapp.register()
    path = tmp_path / "photo.cyc"
    Image.fromarray(photo).save(path, code_size=ckpt.name)
    assert path.read_bytes() == codec.encode(ckpt, photo)
    with Image.open(path) as img:
        assert (img.format, img.mode, img.size) == ("CYC", "RGB", (768, 512))
        assert np.array_equal(np.array(img), codec.reconstruct(ckpt, photo))
    assert Image.open(path).convert("L").size == (768, 512)  # the usual Pillow operations work
    Image.fromarray(photo).save(tmp_path / "default.cyc")  # code_size defaults to "medium"
    assert Image.open(tmp_path / "default.cyc").size == (768, 512)
    Image.fromarray(photo).save(tmp_path / "target.cyc", target_bytes=12_000)  # as cycleapp.encode
    assert (tmp_path / "target.cyc").read_bytes() == cycleapp.encode(photo, target_bytes=12_000)
    assert abs((tmp_path / "target.cyc").stat().st_size - 12_000) <= 0.03 * 12_000


def test_pillow_errors_are_pillows_usual(ckpt, photo, tmp_path):
    cycleapp.register()
    data = codec.encode(ckpt, photo[:32, :32])
    (tmp_path / "cut.cyc").write_bytes(data[:-7])
    with pytest.raises(OSError, match="truncated"):
        Image.open(tmp_path / "cut.cyc")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    (tmp_path / "flip.cyc").write_bytes(bytes(flipped))
    with pytest.raises(OSError, match="checksum"):
        Image.open(tmp_path / "flip.cyc")
    from cycleapp.core.bitstream import CycFile
    foreign = CycFile.from_bytes(data)
    foreign.checkpoint_id = bytes(8)
    (tmp_path / "foreign.cyc").write_bytes(foreign.to_bytes())
    with Image.open(tmp_path / "foreign.cyc") as img, pytest.raises(OSError, match="not installed"):
        img.load()
    (tmp_path / "text.cyc").write_text("not an image")
    with pytest.raises(UnidentifiedImageError):
        Image.open(tmp_path / "text.cyc")
    with pytest.raises(ValueError, match="unknown code size 'gigantic'"):
        Image.fromarray(photo).save(tmp_path / "bad.cyc", code_size="gigantic")
    assert not (tmp_path / "bad.cyc").exists()  # Pillow removes what it had started


def test_api_refuses_sizes_over_the_limits_before_converting(ckpt):
    with pytest.raises(ValueError, match="1,048,561x1 pixels, wider or taller than the 1,048,560"):
        cycleapp.encode(np.zeros((1, 1_048_561, 3), np.uint8), ckpt.name)
    with pytest.raises(ValueError, match="1x1,048,561 pixels, wider or taller"):
        cycleapp.encode(Image.new("1", (1, 1_048_561)), ckpt.name)
    with pytest.raises(ValueError, match="over the limit of 100,000,000"):
        cycleapp.encode(Image.new("1", (10_001, 10_000)), ckpt.name)
