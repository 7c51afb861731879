"""Any image a user may give is read as 8-bit RGB the way a viewer shows it."""
import io
import warnings

import numpy as np
import pytest
from PIL import Image, ImageOps

from cycleapp.imageio import MULTI_FRAME_NOTE, ImageReadError, load_rgb, read_image, to_rgb8


def save(tmp_path, img, name, **kw):
    path = tmp_path / name
    img.save(path, **kw)
    return path


def test_formats(tmp_path, photo):
    crop = Image.fromarray(photo[:64, :96])
    for name, kw in [("a.png", {}), ("a.bmp", {}), ("a.tif", {}), ("a.webp", {"lossless": True}),
                     ("a.jpg", {"quality": 95}), ("a.avif", {"quality": 90}), ("a.heic", {"quality": 90}),
                     ("a.jxl", {"quality": 95}), ("a.gif", {})]:
        picture = read_image(save(tmp_path, crop, name, **kw))
        rgb = picture.rgb
        assert rgb.shape == (64, 96, 3) and rgb.dtype == np.uint8 and picture.notes == [], name
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


def png(path, width, height, bit_depth=1, color_type=0):
    """A PNG of any size written directly (identical rows compress to almost nothing), so a
    100-megapixel file takes a second to make and a few hundred KB of disk."""
    import struct
    import zlib

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    channels = {0: 1, 2: 3}[color_type]
    row = bytes((i * 7) % 256 for i in range((width * channels * bit_depth + 7) // 8))
    z = zlib.compressobj(6)
    idat = b"".join(z.compress(b"\0" + row) for _ in range(height)) + z.flush()
    head = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def heif_family_file(tmp_path, photo, fmt, damage):
    """An AVIF or HEIC file whose header is intact and whose coded image data is damaged."""
    buf = io.BytesIO()
    Image.fromarray(photo[:64, :96]).save(buf, format=fmt)
    data = buf.getvalue()
    start = data.index(b"mdat") + 4
    bad = data[:start + 20] if damage == "cut" else data[:start] + bytes(b ^ 0xFF for b in data[start:])
    path = tmp_path / f"bad-{damage}.{fmt.lower()}"
    path.write_bytes(bad)
    return path


@pytest.mark.parametrize("fmt", ["AVIF", "HEIF"])
@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_damaged_avif_and_heic_are_read_errors(tmp_path, photo, fmt, damage):
    """libavif raises RuntimeError and libheif EOFError or RuntimeError: each is one line naming the file."""
    path = heif_family_file(tmp_path, photo, fmt, damage)
    with pytest.raises(ImageReadError) as err:
        load_rgb(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert err.value.reason.startswith("damaged or unsupported file (")


def test_size_limits_are_checked_before_decoding(tmp_path):
    from cycleapp.imageio import MAX_SIDE

    assert MAX_SIDE == 1_048_560  # the .cyc header's 16-bit code width, times 16
    with pytest.raises(ImageReadError, match="wider or taller than the 1,048,560 a CycleCodec file can hold"):
        load_rgb(png(tmp_path / "wide.png", MAX_SIDE + 1, 1))
    assert load_rgb(png(tmp_path / "widest.png", MAX_SIDE, 1)).shape == (1, MAX_SIDE, 3)
    # 12,248 x 12,248 is 150 M pixels: refused from the header, before Pillow decodes anything.
    with pytest.raises(ImageReadError, match="150,013,504 pixels, over the limit of 100,000,000"):
        load_rgb(png(tmp_path / "big.png", 12_248, 12_248))
    # Over twice Pillow's bomb limit, Image.open itself refuses: still one line of ours.
    with pytest.raises(ImageReadError, match="over 178,956,970 pixels, over the limit of 100,000,000"):
        load_rgb(png(tmp_path / "bomb.png", 20_000, 10_000))
    with pytest.raises(ImageReadError, match="over the limit of 1,000 for a test"):
        read_image(png(tmp_path / "small.png", 40, 30), max_pixels=1000, limit_note=" for a test")


def test_float_images_nan_and_inf_are_defined_and_silent(tmp_path):
    """A float TIFF is 0..1 when no finite value is over 1, else 0..255; NaN and -inf are 0,
    +inf 255; numpy prints no 'invalid value' warning."""
    unit = np.array([[0.0, 0.5, 1.0, np.nan], [np.inf, -np.inf, 0.25, -3.0]], np.float32)
    wide = np.array([[0.0, 100.4, 300.0, np.nan], [np.inf, -np.inf, 1.5, 254.6]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rgb = load_rgb(save(tmp_path, Image.fromarray(unit, "F"), "unit.tif"))
        assert rgb[..., 0].tolist() == [[0, 128, 255, 0], [255, 0, 64, 0]]
        rgb = load_rgb(save(tmp_path, Image.fromarray(wide, "F"), "wide.tif"))
        assert rgb[..., 0].tolist() == [[0, 100, 255, 0], [255, 0, 2, 255]]
        assert np.array_equal(rgb[..., 0], rgb[..., 2])
    big = Image.frombytes("I", (3, 1), np.array([0, 256, 70000], "<i4").tobytes())  # 32-bit: scaled as 16-bit
    assert load_rgb(save(tmp_path, big, "i.tif"))[0, :, 0].tolist() == [0, 1, 255]


@pytest.mark.parametrize("name,kw", [("a.gif", {}), ("a.webp", {"lossless": True}), ("a.tif", {}),
                                     ("a.png", {})])
def test_animations_and_pages_give_the_first_frame_and_a_note(tmp_path, name, kw):
    frames = [Image.new("RGB", (8, 6), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:], **kw)
    picture = read_image(tmp_path / name)
    assert picture.notes == [MULTI_FRAME_NOTE]
    assert tuple(picture.rgb[3, 4]) == (255, 0, 0)
    frames[0].save(tmp_path / f"still-{name}", **kw)
    assert read_image(tmp_path / f"still-{name}").notes == []


def test_every_exif_orientation_as_pillow_applies_it():
    a = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    for value in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = value
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG", exif=exif)
        expected = np.array(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))).convert("RGB"))
        assert np.array_equal(to_rgb8(Image.open(io.BytesIO(buf.getvalue()))), expected), value


@pytest.mark.parametrize("name,orientation", [("g16.png", 1), ("photo.jpg", 6), ("photo.webp", 8)])
def test_fit_reduces_while_reading_like_a_lanczos_downscale(tmp_path, photo, name, orientation):
    """What the app does to a large upload (box reduction per stripe, JPEG decoded at a smaller
    scale, then Lanczos) looks like a Lanczos downscale of the whole image, EXIF orientation kept."""
    if name == "g16.png":
        rows = (photo[..., 1].astype("<u2") * 257)
        img = Image.frombytes("I;16", (768, 512), rows.tobytes())
    else:
        img = Image.fromarray(photo)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(tmp_path, img, name, exif=exif, **({"quality": 95} if name.endswith("jpg") else {}))
    full = load_rgb(path)
    picture = read_image(path, fit=40_000)
    h, w = full.shape[:2]
    assert picture.size == (w, h) and picture.reduced
    assert picture.rgb.shape[0] * picture.rgb.shape[1] <= 40_000 and (picture.rgb.shape[0] < picture.rgb.shape[1]) == (h < w)
    reference = np.asarray(Image.fromarray(full).resize(picture.rgb.shape[1::-1], Image.Resampling.LANCZOS))
    assert np.abs(picture.rgb.astype(int) - reference).mean() < 2.0
    assert read_image(path, fit=w * h).rgb.shape == full.shape  # nothing to reduce: the image itself


MEMORY_PROBE = """
import sys
from cycleapp.imageio import read_image
def peak_kb():  # this process's own (its ru_maxrss would start at the forking parent's, the test runner's)
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])
before = peak_kb()
picture = read_image(sys.argv[1], fit=int(sys.argv[2]) or None)
print((peak_kb() - before) // 1024, *picture.rgb.shape)
"""


def test_reading_100_megapixels_stays_in_bounded_memory(tmp_path):
    """Peak memory of reading a 9999x9999 PNG, over the process's size after imports, in a fresh
    process. The 1-bit file read at full size (the CLI) costs the decoder's 1 byte a pixel and the
    3-byte output: under 500 MB (it was 1.15 GB). The 16-bit file read for the app (reduced to
    4 MP while reading) costs the decoder's 2 bytes a pixel and a box-reduced copy: under 450 MB
    (it was 2.7 GB). No DecompressionBombWarning is printed: our own limit (100 M) applies."""
    import subprocess
    import sys

    from conftest import REPO

    cases = [(png(tmp_path / "bits.png", 9999, 9999, 1), 0, 500, (9999, 9999)),
             (png(tmp_path / "g16.png", 9999, 9999, 16), 4_000_000, 450, (2000, 2000))]
    for path, fit, bound_mb, shape in cases:
        out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path), str(fit)], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stderr == "", out.stderr
        peak_mb, *got = map(int, out.stdout.split())
        assert tuple(got) == (*shape, 3)
        assert peak_mb < bound_mb, (path.name, peak_mb)


def test_upload_notes_for_the_app(tmp_path):
    from cycleapp.app import ui

    frames = [Image.new("RGB", (8, 6), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    rgb, note = ui.read_upload(tmp_path / "anim.gif")
    assert rgb.shape == (6, 8, 3) and note == "The file is animated or has several pages; only its first frame is used."
    rgb, note = ui.read_upload(png(tmp_path / "big.png", 3000, 2000))
    assert rgb.shape == (1632, 2449, 3) and note == ("The image (3000x2000) was downscaled to 2449x1632 "
                                                     "(limit 4,000,000 pixels).")
    with pytest.raises(ui.UserError, match=r"^Could not read this file \('wide.png'\) as an image: the image is "
                                           r"1,048,561x1 pixels, wider or taller than the 1,048,560 a CycleCodec file can hold.$"):
        ui.read_upload(png(tmp_path / "wide.png", 1_048_561, 1))
    bad = heif_family_file(tmp_path, np.zeros((64, 96, 3), np.uint8), "AVIF", "cut")
    with pytest.raises(ui.UserError, match=r"^Could not read this file \('bad-cut.avif'\) as an image: damaged"):
        ui.read_upload(bad)
