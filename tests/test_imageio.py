"""Any image a user may give is read as 8-bit RGB the way a viewer shows it."""
import io

import numpy as np
import pytest
from PIL import Image

from cycleapp.imageio import ImageReadError, load_rgb


def save(tmp_path, img, name, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path


def test_formats(tmp_path, photo):
    crop = Image.fromarray(photo[:64, :96])
    for name, kw in [("a.png", {}), ("a.bmp", {}), ("a.tif", {}), ("a.webp", {"lossless": True}),
                     ("a.jpg", {"quality": 95}), ("a.avif", {"quality": 90}), ("a.heic", {"quality": 90})]:
        rgb = load_rgb(save(tmp_path, crop, name, **kw))
        assert rgb.shape == (64, 96, 3) and rgb.dtype == np.uint8, name
        assert np.abs(rgb.astype(int) - photo[:64, :96]).mean() < 8, name


def test_modes(tmp_path):
    gray = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) * 4, "L")
    rgb = load_rgb(save(tmp_path, gray, "g.png"))
    assert np.array_equal(rgb[..., 0], rgb[..., 2]) and rgb[0, 1, 0] == 4

    sixteen = Image.frombytes("I;16", (8, 8), (np.arange(64, dtype="<u2") * 1024).tobytes())
    rgb = load_rgb(save(tmp_path, sixteen, "s.png"))
    assert rgb[0, 1, 0] == round(1024 * 255 / 65535) and rgb.max() <= 255 and rgb[7, 7, 0] == 251

    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red
    assert tuple(load_rgb(save(tmp_path, cmyk, "c.tif"))[0, 0]) == (255, 0, 0)

    pal = Image.new("RGB", (4, 4), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert tuple(load_rgb(save(tmp_path, pal, "p.png"))[0, 0]) == (10, 200, 30)


def test_alpha_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgb = load_rgb(save(tmp_path, rgba, "a.png"))
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[1, 1]) == (255, 255, 255)


@pytest.mark.parametrize("orientation,red_at", [(6, "top"), (8, "bottom"), (1, "left")])
def test_exif_orientation_applied(tmp_path, orientation, red_at):
    """A wide image, red on its left half, blue on its right. Shown with EXIF orientation 6 (turn 90
    degrees clockwise) the left half goes to the top; with 8 (270 degrees) to the bottom."""
    a = np.zeros((16, 48, 3), np.uint8)
    a[:, :24, 0] = 255
    a[:, 24:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    rgb = load_rgb(save(tmp_path, Image.fromarray(a), "o.jpg", exif=exif, quality=95))
    assert rgb.shape == ((16, 48, 3) if orientation == 1 else (48, 16, 3))
    half = {"top": rgb[:20], "bottom": rgb[-20:], "left": rgb[:, :20]}[red_at]
    assert half[..., 0].mean() > 200 and half[..., 2].mean() < 50, (orientation, half.mean(axis=(0, 1)))


def test_unreadable(tmp_path):
    bad = tmp_path / "fake.png"
    bad.write_text("this is not an image")
    with pytest.raises(ImageReadError, match="not a readable image"):
        load_rgb(bad)
    with pytest.raises(ImageReadError, match="no such file"):
        load_rgb(tmp_path / "missing.png")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, format="PNG")
    (tmp_path / "cut.png").write_bytes(buf.getvalue()[:60])
    with pytest.raises(ImageReadError):
        load_rgb(tmp_path / "cut.png")
