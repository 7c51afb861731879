"""The app's logic that is not layout: reading uploads with messages fit for a user, the size
presets in plain words, the results table (HTML, readable from phone to desktop), status lines
and the bounded view of the code. No Gradio here: `app.py` wires these to components.
"""
from __future__ import annotations

import base64
import html
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from . import checkpoint as ckpts
from . import codecs as registry
from .imageio import NOT_AN_IMAGE, ImageReadError, fit_size, read_image

LABELS = registry.labels()  # every codec's label, from the registry

MAX_PIXELS = 4_000_000  # larger uploads (up to imageio.MAX_PIXELS) are downscaled while read, with a note
FORMATS = "PNG, JPEG, WebP, AVIF, HEIC, TIFF or BMP"


class UserError(ValueError):
    """Something the user can fix; the message is shown as is (never a server path)."""


# Absolute POSIX or Windows paths inside a message (the library names files in its errors).
_PATH = re.compile(r"(?:[A-Za-z]:\\|/)[^\s:'\"]*")


def clean_message(text: str, path: str | os.PathLike | None = None) -> str:
    """A message without server paths: the upload's own path becomes its file name, any other
    absolute path is dropped."""
    text = str(text)
    if path:
        text = text.replace(str(path), f"'{Path(path).name}'")
    text = _PATH.sub("", text)
    return re.sub(r"\s+([:,.)])", r"\1", re.sub(r"\s{2,}", " ", text)).strip().rstrip(":").strip()


def read_upload(path: str | os.PathLike | None) -> tuple[np.ndarray, str]:
    """The uploaded image as RGB, downscaled while it is read if over MAX_PIXELS, and the notes for
    the user (downscale, first frame of an animation); UserError otherwise."""
    if not path:
        raise UserError(f"Please upload an image ({FORMATS}) or pick an example.")
    name = Path(path).name
    if not os.path.exists(path):
        raise UserError(f"The upload '{name}' is gone from the server; please upload it again.")
    if os.path.getsize(path) == 0:
        raise UserError(f"The uploaded file is empty ('{name}', 0 bytes).")
    try:
        picture = read_image(path, fit=MAX_PIXELS)
    except ImageReadError as e:
        reason = clean_message(e.reason, path)
        if e.reason == NOT_AN_IMAGE:
            reason = f"it is not an image in a format we read ({FORMATS})"
        raise UserError(f"Could not read this file ('{name}') as an image: {reason}.") from None
    notes = [note[0].upper() + note[1:] + "." for note in picture.notes]
    if picture.reduced:
        (w, h), small = picture.size, picture.rgb
        notes.insert(0, f"The image ({w}x{h}) was downscaled to {small.shape[1]}x{small.shape[0]} "
                        f"(limit {MAX_PIXELS:,} pixels).")
    return picture.rgb, " ".join(notes)


def downscale(rgb: np.ndarray, max_pixels: int) -> np.ndarray:
    """Lanczos downscale to at most max_pixels (aspect kept); the image itself if already small."""
    h, w = rgb.shape[:2]
    if h * w <= max_pixels:
        return rgb
    return np.array(Image.fromarray(rgb).resize(fit_size(w, h, max_pixels), Image.Resampling.LANCZOS))


# ---- code sizes -------------------------------------------------------------------------------

SIZE_INFO = ("Presets from the smallest file (tiny) to the best quality (huge). The numbers are "
             "typical on the Kodak photos: bpp = bits per pixel (lower = smaller file), "
             "dB = PSNR (higher = closer to the original).")


MAX_TARGET_KB = 100_000  # 100 MB: far beyond any upload the app accepts (MAX_PIXELS, 25 MB)


@dataclass(frozen=True)
class SizeRequest:
    """What the user asked for: a preset (a code size), or a target in KB that the learned codec's
    rate control meets (a code size and a step offset chosen for this image, within 3 %)."""
    preset: str
    target_kb: float | None = None

    @property
    def target_bytes(self) -> int | None:
        return None if self.target_kb is None else int(round(self.target_kb * 1000))

    @property
    def reference(self):
        """What `compare` takes: the learned codec at the preset, or the target in bytes (an int)."""
        return registry.learned(self.preset) if self.target_kb is None else self.target_bytes


def size_label(name: str) -> str:
    """A short dropdown label: 'medium · ~0.29 bpp · 29.4 dB'."""
    kodak = ckpts.by_name(name).meta.get("kodak") or {}
    if not kodak:
        return name
    return f"{name} · ~{kodak['bpp']:.2f} bpp · {kodak['psnr']:.1f} dB"


def size_choices() -> list[tuple[str, str]]:
    return [(size_label(p.stem), p.stem) for p in ckpts.available()]


def resolve_size(preset: str | None, target_kb: float | str | None = None) -> SizeRequest:
    """The size inputs read and checked: UserError for an unknown preset or an impossible target.
    A target (a number, or text such as '20' or '20 KB'; empty or None: no target) replaces the
    preset, which is then not checked."""
    if isinstance(target_kb, str):
        target_kb = re.sub(r"\s*kb\s*$", "", target_kb.strip(), flags=re.IGNORECASE) or None
    if target_kb is not None:
        try:
            target_kb = float(target_kb)
        except (TypeError, ValueError):
            raise UserError(f"The target size must be a number of KB, not '{target_kb}'.") from None
        if not math.isfinite(target_kb) or target_kb * 1000 < 1:
            raise UserError("The target size must be more than 0 KB (leave it empty to use the code size).")
        if target_kb > MAX_TARGET_KB:
            raise UserError(f"The target size of {target_kb:,g} KB is over the limit of {MAX_TARGET_KB:,} KB "
                            f"(100 MB); a compressed image of at most {MAX_PIXELS:,} pixels is far smaller.")
        return SizeRequest(str(preset), target_kb)
    names = [p.stem for p in ckpts.available()]
    if preset not in names:
        raise UserError(f"Unknown code size '{preset}' (choose one of: {', '.join(names)}).")
    return SizeRequest(preset)


# ---- the results table ------------------------------------------------------------------------

# (key, header, unit line, digits, better): better is "low", "high" or None (no best marked).
TABLE = [
    ("codec", "codec", "", None, None),
    ("bytes", "bytes", "file size", 0, "low"),
    ("bpp", "bpp", "bits/pixel", 3, "low"),
    ("psnr", "PSNR", "dB ↑", 2, "high"),
    ("ms_ssim", "MS-SSIM", "0–1 ↑", 4, "high"),
    ("ssim", "SSIM", "0–1 ↑", 4, "high"),
    ("encode_ms", "encode", "ms", 1, "low"),
    ("decode_ms", "decode", "ms", 1, "low"),
    ("setting", "setting", "", None, None),
]
MAIN_COLUMNS = ["codec", "bytes", "bpp", "psnr", "ms_ssim"]  # visible without scrolling on a phone

LEGEND = (
    "<b>bytes</b>: the whole file. <b>bpp</b>: bits per pixel, 8 × bytes / pixels: lower is a smaller "
    "file. <b>PSNR</b> (dB): how close the decoded pixels are to the original, higher is better "
    "(+1 dB is a visible step at these sizes). <b>MS-SSIM</b> and <b>SSIM</b>: structural similarity, "
    "0 to 1, higher is better. Every codec is matched to the <code>.cyc</code> file's size, so compare "
    "the quality columns. <span class='best'>★</span> marks the best value of a column.")


def cell_text(key: str, value, digits: int | None) -> str:
    if value is None:
        return "n/a"
    if key == "codec":
        return LABELS.get(value, str(value)).replace("CycleCodec", "Cycle\u00adCodec")
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞ (lossless)" if key == "psnr" else "∞"
        return f"{value:,.{digits}f}" if digits is not None else f"{value:g}"
    return str(value)


def best_rows(rows: list[dict], key: str, better: str | None) -> set[int]:
    """Indices of the rows holding the best value of a column (ties all marked); none if one row."""
    values = [(i, r[key]) for i, r in enumerate(rows) if isinstance(r.get(key), (int, float))]
    if better is None or len(values) < 2:
        return set()
    target = (min if better == "low" else max)(v for _, v in values)
    if all(v == target for _, v in values):
        return set()
    return {i for i, v in values if v == target}


def results_html(rows: list[dict]) -> str:
    """The results as an HTML table: main columns first (they fit a 390 px phone), units in the
    headers, best value per column starred, numbers with fixed decimals (33.0 -> 33.00)."""
    best = {key: best_rows(rows, key, better) for key, _, _, _, better in TABLE}
    head = "".join(
        f"<th class='c-{key}' scope='col'>{html.escape(title)}"
        + (f"<small>{html.escape(unit)}</small>" if unit else "") + "</th>"
        for key, title, unit, _, _ in TABLE)
    body = []
    for i, r in enumerate(rows):
        cells = []
        for key, _, _, digits, _ in TABLE:
            text = html.escape(cell_text(key, r.get(key), digits))
            if i in best[key]:
                cells.append(f"<td class='c-{key} best' title='best in this column'>{text}<span "
                             "class='star' aria-label='best'>★</span></td>")
            elif key == "codec":
                cells.append(f"<th class='c-codec' scope='row'>{text}</th>")
            else:
                cells.append(f"<td class='c-{key}'>{text}</td>")
        body.append(f"<tr data-codec='{html.escape(str(r['codec']))}'>{''.join(cells)}</tr>")
    return (f"<div class='results-scroll'><table class='results-table'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div><p class='legend'>{LEGEND}</p>")


def api_table(rows: list[dict], columns: list[str]) -> list[list]:
    """The table the /compare API returns: raw numbers ('n/a' where a metric does not apply)."""
    table = [[row[k] if row[k] is not None else "n/a" for k in columns] for row in rows]
    for line in table:
        for i, k in enumerate(columns):
            if isinstance(line[i], float) and math.isfinite(line[i]):
                line[i] = round(line[i], 4 if k in ("bpp", "ssim", "ms_ssim") else 2)
    return table


# ---- status -----------------------------------------------------------------------------------

def status_html(kind: str, lines: list[str]) -> str:
    """The status area: kind is 'idle', 'working', 'ok' or 'error'; one line per message."""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines if line)
    role = " role='alert'" if kind == "error" else " role='status'"
    title = "<b>Error.</b> " if kind == "error" else ""
    return f"<div class='status status-{kind}'{role}>{title}<ul>{items}</ul></div>"


def success_lines(rows: list[dict], note: str, seconds: float, target_bytes: int | None = None) -> list[str]:
    """What a run found, one line each: timing and size (and, for a target, the code size and step
    offset the rate control chose), the downscale note, each codec's note."""
    first = rows[0]
    label = LABELS.get(first["codec"], first["codec"])
    lines = [f"Done in {seconds:.1f} s: {label} wrote {first['bytes']:,} bytes "
             f"({first['bpp']:.3f} bpp); every other codec was set to the same size."]
    if target_bytes is not None:
        lines.append(f"Target {target_bytes:,} bytes: {label} chose code size {first['setting']} "
                     f"({100 * (first['bytes'] / target_bytes - 1):+.1f} % from the target).")
    if note:
        lines.append(note)
    notes = [f"{LABELS.get(r['codec'], r['codec'])}: {r['note']}" for r in rows if r.get("note")]
    lines += notes or (["All codecs matched the .cyc file's size within 3 %."] if len(rows) > 1 else [])
    return lines


# ---- the code, as an image --------------------------------------------------------------------

CODE_VIEW_MAX = 640  # longest side of the code view, in pixels, for any aspect ratio
CODE_VIEW_MIN = 160  # a tiny code is enlarged (nearest neighbour) until its shorter side reaches this


def code_mosaic(code: np.ndarray, channels: int = 16) -> np.ndarray:
    """The first channels of a (C, h, w) integer code, tiled in the grid whose shape is closest to
    4:3 (1x16 for a tall strip, 16x1 for a wide one), grey = 0; uint8, at most CODE_VIEW_MAX on its
    longest side and enlarged by an integer factor when small."""
    code = np.asarray(code, dtype=np.float32)[:channels]
    c, h, w = code.shape
    shapes = [(r, -(-c // r)) for r in range(1, c + 1) if c % r == 0] or [(1, c)]
    rows, cols = min(shapes, key=lambda s: abs(math.log((s[1] * (w + 1)) / (s[0] * (h + 1)) / (4 / 3))))
    peak = max(1.0, float(np.abs(code).max()))
    tiles = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), 1.0, dtype=np.float32)  # white gutters
    for i in range(c):
        r, q = divmod(i, cols)
        tiles[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = 0.5 + 0.5 * code[i] / peak
    img = (tiles * 255).round().astype(np.uint8)
    long_side, short_side = max(img.shape), min(img.shape)
    if long_side > CODE_VIEW_MAX:  # nearest-neighbour subsampling keeps integer values visible
        step = -(-long_side // CODE_VIEW_MAX)
        img = img[::step, ::step]
    else:
        scale = max(1, min(CODE_VIEW_MAX // long_side, -(-CODE_VIEW_MIN // short_side)))
        img = np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)
    return img


def code_view_html(code: np.ndarray) -> str:
    """The code a file stores (`entry.code(data)` of the learned codec), as a bounded mosaic."""
    img = code_mosaic(code)
    buf = io.BytesIO()
    Image.fromarray(img, "L").save(buf, format="PNG")
    src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    c, h, w = code.shape
    return (f"<figure class='code-view'><img src='{src}' width='{img.shape[1]}' height='{img.shape[0]}' "
            f"alt='the first {min(16, c)} channels of the code'><figcaption>The code the file stores: "
            f"{c} channels of {w}x{h} numbers (one per 16x16 block of pixels); the first {min(16, c)} "
            f"shown, grey = 0, light = positive, dark = negative. Most are 0: that is why the file is "
            f"small.</figcaption></figure>")


# ---- files ------------------------------------------------------------------------------------

def save_png(rgb: np.ndarray, path: Path) -> str:
    """Lossless PNG, fast compression: the inspector and downloads serve these very files, so the
    browser gets the decoded pixels bit for bit and nothing is encoded twice."""
    Image.fromarray(rgb).save(path, format="PNG", compress_level=1)
    return str(path)


def safe_stem(path: str | os.PathLike) -> str:
    stem = re.sub(r"[^\w.-]+", "_", Path(path).stem)[:40].strip("._")
    return stem or "image"


DETAIL_SIDE = 128  # side of the square searched for the most detailed region, in image pixels


def detail_centre(rgb: np.ndarray) -> tuple[int, int]:
    """Centre (x, y) of the most detailed DETAIL_SIDE square: where codecs differ most. Coarse (on
    a grid of 1/4 of the side), computed with integral images so a 4-megapixel image takes ~0.1 s."""
    h, w = rgb.shape[:2]
    side = min(DETAIL_SIDE, h, w)
    gray = rgb.astype(np.float32).mean(axis=2)
    detail = np.zeros((h, w), dtype=np.float64)
    detail[1:, :] += np.abs(np.diff(gray, axis=0))
    detail[:, 1:] += np.abs(np.diff(gray, axis=1))
    integral = np.zeros((h + 1, w + 1))
    integral[1:, 1:] = detail.cumsum(0).cumsum(1)
    step = max(1, side // 4)
    tops = np.arange(0, h - side + 1, step)
    lefts = np.arange(0, w - side + 1, step)
    t, l = tops[:, None], lefts[None, :]
    sums = integral[t + side, l + side] - integral[t, l + side] - integral[t + side, l] + integral[t, l]
    i, j = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(lefts[j] + side // 2), int(tops[i] + side // 2)


PAGE_CSS = """
#status .status { padding: 10px 14px; border-radius: 8px; border: 1px solid var(--border-color-primary);
  background: var(--block-background-fill); min-height: 2.6em; }
#status .status ul { margin: 0; padding: 0; list-style: none; display: inline-block; vertical-align: top; }
#status .status li + li { margin-top: 4px; }
#status .status-error { border-color: #d33; background: #fdecec; color: #8a1010; font-weight: 600; }
#status .status-ok { border-color: #2a8a4a; }
.results-scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
.results-table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 14px;
  width: 100%; }
.results-table th, .results-table td { padding: 5px 6px; text-align: right; white-space: nowrap;
  border-bottom: 1px solid var(--border-color-primary); }
.results-table thead th { vertical-align: bottom; font-weight: 600; }
.results-table thead th small { display: block; font-weight: 400; font-size: 11px;
  color: var(--body-text-color-subdued); }
.results-table .c-codec, .results-table .c-setting { text-align: left; }
.results-table td.c-setting { white-space: normal; min-width: 7em; font-size: 12.5px; }
.results-table tbody th.c-codec { font-weight: 600; white-space: normal; }
.results-table td.best { font-weight: 700; background: #2a8a4a1f; }
.results-table .star { color: #2a8a4a; }
.legend { font-size: 12.5px; color: var(--body-text-color-subdued); margin: 6px 0 0; }
.legend .best { color: #2a8a4a; }
.code-view { margin: 0; }
.code-view img { display: block; max-width: 100%; max-height: 480px; width: auto; height: auto;
  image-rendering: pixelated; border: 1px solid var(--border-color-primary); }
.code-view figcaption { font-size: 12.5px; color: var(--body-text-color-subdued); margin-top: 4px; }
#rd-plot img { max-height: 520px; object-fit: contain; }
.results-table td.best { position: relative; }
.results-table .star { position: absolute; top: 0; right: 1px; font-size: 9px; line-height: 1; }
@media (max-width: 640px) {
  .gradio-container .main.app { padding-left: 8px; padding-right: 8px; }
  .results-table { font-size: 12.5px; }
  .results-table th, .results-table td { padding: 4px 3px; }
  .results-table thead th small { font-size: 10px; }
}
"""
