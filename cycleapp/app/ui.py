"""The app's logic that is not layout: reading uploads with messages fit for a user, the size
presets in plain words, the results table with its verdict (HTML, readable from phone to desktop),
the download links, status lines (and a run's progress, step by step) and the bounded view of the
code. No Gradio here: `app.py` wires these to components.
"""
from __future__ import annotations

import base64
import html
import io
import math
import os
import queue
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from cycleapp.core import checkpoint as ckpts
from cycleapp.core import learned
from cycleapp.evaluation import registry
from cycleapp.evaluation import verdict as verdicts
from cycleapp.imageio import NOT_AN_IMAGE, ImageReadError, fit_size, read_image
from cycleapp.evaluation.matching import QUALITY_TOLERANCE

LABELS = registry.labels()  # every codec's label, from the registry

MAX_PIXELS = 4_000_000  # larger uploads (up to imageio.MAX_PIXELS) are downscaled while read, with a note
FORMATS = "PNG, JPEG, WebP, AVIF, HEIC, TIFF or BMP"


class UserError(ValueError):
    """Something the user can fix; the message is shown as is (never a server path)."""


class LastErrors:
    """The last error of each browser session (at most `size` sessions, the oldest forgotten), for
    the status area: the step that shows a failure reads the message its check or run left."""

    def __init__(self, size: int = 512):
        self.size = size
        self._messages: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, session: str, message: str) -> None:
        with self._lock:
            self._messages[session] = message
            self._messages.move_to_end(session)
            while len(self._messages) > self.size:
                self._messages.popitem(last=False)

    def pop(self, session: str) -> str | None:
        with self._lock:
            return self._messages.pop(session, None)


def kb(n: int) -> str:
    """A file size as the app says sizes: KB of 1000 bytes ('28.5 KB'), to three significant digits."""
    return f"{n / 1000:.3g} KB" if n < 100_000 else f"{n / 1000:,.0f} KB"


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
    if has_alpha(path):
        notes.append("Its transparency was composited onto white (a .cyc file, like a JPEG, has no alpha "
                     "channel); every codec was given the same white-backed pixels.")
    if picture.reduced:
        (w, h), small = picture.size, picture.rgb
        notes.insert(0, f"The image ({w}x{h}) was downscaled to {small.shape[1]}x{small.shape[0]} "
                        f"(limit {MAX_PIXELS:,} pixels).")
    return picture.rgb, " ".join(notes)


def has_alpha(path: str | os.PathLike) -> bool:
    """Whether an image file has transparency (read from its header: no second decode)."""
    try:
        with Image.open(path) as img:
            return img.mode in ("RGBA", "LA", "La", "PA", "RGBa") or "transparency" in img.info
    except Exception:  # read_image has read it already; a header Pillow cannot reopen has no note
        return False


def downscale(rgb: np.ndarray, max_pixels: int) -> np.ndarray:
    """Lanczos downscale to at most max_pixels (aspect kept); the image itself if already small."""
    h, w = rgb.shape[:2]
    if h * w <= max_pixels:
        return rgb
    return np.array(Image.fromarray(rgb).resize(fit_size(w, h, max_pixels), Image.Resampling.LANCZOS))


# ---- code sizes -------------------------------------------------------------------------------

SIZE_INFO = ("Presets from the smallest file (tiny) to the best quality (huge), then lossless (the very "
             "same pixels back) and near-lossless (every pixel within N of the original). The numbers "
             "are typical on the Kodak photos: bpp = bits per pixel (lower = smaller file), "
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
        return learned.by_name(self.preset) if self.target_kb is None else self.target_bytes


def size_label(name: str) -> str:
    """A short dropdown label: 'medium · ~0.29 bpp · 29.4 dB'."""
    kodak = ckpts.by_name(name).meta.get("kodak") or {}
    if not kodak:
        return name
    return f"{name} · ~{kodak['bpp']:.2f} bpp · {kodak['psnr']:.1f} dB"


def mode_label(name: str) -> str:
    """'lossless · same pixels', 'near-lossless · every pixel within 2'."""
    if name == learned.LOSSLESS:
        return "lossless · the same pixels"
    return f"near-lossless · every pixel within {name[len(learned.NEAR_LOSSLESS):]}"


def size_choices() -> list[tuple[str, str]]:
    """The code sizes, then the modes above them (lossless, near-lossless)."""
    return [(size_label(p.stem), p.stem) for p in ckpts.available()] + \
        [(mode_label(m), m) for m in learned.mode_names()]


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
    names = [p.stem for p in ckpts.available()] + learned.mode_names()
    if preset not in names:
        raise UserError(f"Unknown code size '{preset}' (choose one of: {', '.join(names)}).")
    return SizeRequest(preset)


# ---- the results table ------------------------------------------------------------------------

# (key, header, unit line, digits): the columns, in order. "ratio" (the bytes over ours) is shown
# at the same quality only. Which cells are starred: `verdict.stars`.
TABLE = [
    ("codec", "codec", "", None),
    ("bytes", "bytes", "file size", 0),
    ("ratio", "× bytes", "vs ours ↓", 2),
    ("bpp", "bpp", "bits/pixel", 3),
    ("psnr", "PSNR", "dB ↑", 2),
    ("ms_ssim", "MS-SSIM", "0–1 ↑", 4),
    ("ssim", "SSIM", "0–1 ↑", 4),
    ("encode_ms", "encode", "ms", 1),
    ("decode_ms", "decode", "ms", 1),
    ("setting", "setting", "", None),
]
MAIN_COLUMNS = ["codec", "bytes", "bpp", "psnr", "ms_ssim"]  # visible without scrolling on a phone
# What each column means, on its header: shown on hover (a title) and on a tap or focus (`tip`).
COLUMN_TIPS = {
    "codec": "The codec that wrote the file.",
    "bytes": "The whole file, header included, in bytes (1 KB = 1000 bytes).",
    "ratio": "This file's bytes over CycleCodec's: under 1, a smaller file than ours.",
    "bpp": "Bits per pixel: 8 × bytes / pixels. Lower is a smaller file.",
    "psnr": "How close the decoded pixels are to the original, in dB. Higher is better (+1 dB is a "
            "visible step at these sizes).",
    "ms_ssim": "Multi-scale structural similarity of the decoded image to the original, 0 to 1. Higher is better.",
    "ssim": "Structural similarity of the decoded image to the original, 0 to 1. Higher is better.",
    "encode_ms": "The time to write the file, in milliseconds, on this server.",
    "decode_ms": "The time to read the file back into pixels, in milliseconds, on this server.",
    "setting": "What each codec was set to; tap or hover over a setting for what it means.",
}

LEGEND = (
    "<b>bytes</b>: the whole file. <b>bpp</b>: bits per pixel, 8 × bytes / pixels: lower is a smaller "
    "file. <b>PSNR</b> (dB): how close the decoded pixels are to the original, higher is better "
    "(+1 dB is a visible step at these sizes). <b>MS-SSIM</b> and <b>SSIM</b>: structural similarity, "
    "0 to 1, higher is better. <b>setting</b>: what each codec was set to: for CycleCodec its code size, "
    "and <i>steps ×0.3</i> when its quantisation steps were scaled to meet a size (finer steps, a larger "
    "file); for JPEG 2000 the bitrate asked of its encoder (<i>target bpp</i>); for the others their "
    "quality scale. ")
LEGEND_MODE = {
    "size": "Every codec is matched to the <code>.cyc</code> file's size (±3 %), so compare the quality "
            "columns. <span class='best'>★</span> marks the best value of a column among the codecs that "
            "matched; a codec marked <i>not matched</i> missed the size and is left out.",
    "quality": "Every codec is matched to the <code>.cyc</code> file's {metric} (±{tol}), so compare the "
               "bytes: <b>× bytes</b> is each file's size over ours (under 1: smaller than ours). "
               "<span class='best'>★</span> marks the smallest among the codecs that matched; a codec "
               "marked <i>not matched</i> missed the {metric} and is left out.",
}
TIMES_NOTE = " Encode and decode times are measured while another codec runs on the other core."


def cell_text(key: str, value, digits: int | None) -> str:
    if value is None:
        return "n/a"
    if key == "codec":
        return LABELS.get(value, str(value)).replace("CycleCodec", "Cycle\u00adCodec")
    if key == "ratio":
        return f"{value:.2f}×"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{int(value):,}"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞ (lossless)" if key == "psnr" else "∞"
        return f"{value:,.{digits}f}" if digits is not None else f"{value:g}"
    return str(value)


def setting_help(row: dict) -> str:
    """What a row's setting means, in words (the setting cell's tooltip): 'huge, steps x0.302' and
    'target bpp 0.1996' say little to someone who has not read the code."""
    setting, codec = str(row.get("setting") or ""), row.get("codec")
    if codec == learned.LEARNED:
        size = setting.split(",")[0].split(" + ")[0]
        if " + " in setting:
            return (f"The {size} code size plus an enhancement layer that codes what it left out ({setting[len(size) + 3:]}): "
                    "a finer step, a larger file closer to the original.")
        if "steps x" in setting:
            factor = float(setting.rsplit("x", 1)[1])
            return (f"The {size} code size with its quantisation steps scaled by {factor:g} to meet the size asked "
                    f"for: {'finer steps, a larger file and a better image' if factor < 1 else 'coarser steps, a smaller file'} "
                    "than the code size as trained.")
        return f"The {setting} code size as trained."
    if codec == "jpeg2000":
        return (f"The bitrate asked of the JPEG 2000 encoder ({setting.split()[-1]} bits per pixel), found to make "
                "its file the size matched; the file's own bpp is in the bpp column.")
    if setting.startswith("quality"):
        return f"{LABELS.get(codec, codec)}'s quality scale ({setting.split()[-1]}; higher: a larger file, a better image)."
    return setting


def verdict_html(rows: list[dict], match: str = "size") -> str:
    """The verdict above the table (`verdict.verdict`); its winners are in data attributes."""
    v = verdicts.verdict(rows, match)
    data = "".join(f" data-winner-{key.replace('_', '-')}='{html.escape(' '.join(names))}'"
                   for key, names in v.winners.items())
    heading, *lines = v.lines
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return (f"<div class='verdict' data-match='{html.escape(match)}'{data}><p class='verdict-head'>"
            f"{html.escape(heading)}</p><ul>{items}</ul></div>")


def tip_attrs(text: str, title: bool = True) -> str:
    """The attributes of an element (of class `tip`) that explains itself: a title (a mouse's hover)
    and the same words in `data-tip`, shown while it has the focus (PAGE_CSS `.tip`), which a tap
    gives it on a phone, where a title never shows."""
    text = html.escape(text, quote=True)
    return (f" title='{text}'" if title else "") + f" tabindex='0' data-tip='{text}'"


def results_html(rows: list[dict], match: str = "size", parallel: bool = False) -> str:
    """The verdict, then the results as an HTML table: main columns first (they fit a 390 px
    phone), units in the headers, the best values starred among the codecs that matched (those
    that did not are marked), numbers with fixed decimals (33.0 -> 33.00). At the same quality
    the rows are ranked by bytes and a column gives each file's bytes over ours."""
    flags = verdicts.competes(rows, match)
    best = verdicts.stars(rows, match)
    rows = [dict(r, ratio=q) for r, q in zip(rows, verdicts.ratios(rows))]
    columns = [c for c in TABLE if c[0] != "ratio"]
    if match != "size":  # the ratio after the bytes; bpp (the same answer again) after the qualities
        bpp = next(c for c in columns if c[0] == "bpp")
        columns.remove(bpp)
        columns.insert(2, next(c for c in TABLE if c[0] == "ratio"))
        columns.insert(columns.index(next(c for c in columns if c[0] == "ms_ssim")) + 1, bpp)
    order = list(range(len(rows)))
    if match != "size":  # ranked by bytes, those that missed the quality last
        order.sort(key=lambda i: (not flags[i], rows[i]["bytes"] if rows[i]["bytes"] is not None else math.inf))
    head = "".join(
        f"<th class='c-{key} tip' scope='col'{tip_attrs(COLUMN_TIPS[key])}>{html.escape(title)}"
        + (f"<small>{html.escape(unit)}</small>" if unit else "") + "</th>"
        for key, title, unit, _ in columns)
    body = []
    for i in order:
        r, cells = rows[i], []
        for key, _, _, digits in columns:
            text = html.escape(cell_text(key, r.get(key), digits))
            if i in best.get(key, ()):
                cells.append(f"<td class='c-{key} best' title='best in this column'>{text}<span "
                             "class='star' aria-label='best'>★</span></td>")
            elif key == "setting" and r.get("setting"):
                cells.append(f"<td class='c-setting' title='{html.escape(setting_help(r), quote=True)}'>"
                             f"<span class='explained tip'{tip_attrs(setting_help(r), title=False)}>{text}</span></td>")
            elif key == "codec":
                missed = "" if flags[i] else "<small class='missed-note'>not matched</small>"
                cells.append(f"<th class='c-codec' scope='row'>{text}{missed}</th>")
            else:
                cells.append(f"<td class='c-{key}'>{text}</td>")
        state = "matched" if flags[i] else "missed"
        body.append(f"<tr data-codec='{html.escape(str(r['codec']))}' class='{state}'>{''.join(cells)}</tr>")
    metric = {"psnr": "PSNR", "ms_ssim": "MS-SSIM"}.get(match, "")
    mode = LEGEND_MODE["size" if match == "size" else "quality"].format(
        metric=metric, tol=f"{QUALITY_TOLERANCE.get(match, 0):g}" + (" dB" if match == "psnr" else ""))
    return (f"{verdict_html(rows, match)}<div class='results-scroll'><table class='results-table'><thead><tr>"
            f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div><p class='legend'>{LEGEND}{mode}"
            f"{TIMES_NOTE if parallel else ''}</p>")


def downloads_html(files: list[tuple[str, str, int]], reconstructions: list[str] = ()) -> str:
    """Links to every codec's real file, named by codec: the file the table measured, so its size
    is the table's byte count ([(codec, served path, bytes)]); then the lossless PNG
    reconstructions. Sizes in KB of 1000 bytes, and in bytes as the table gives them."""
    def item(path: str, text: str, size: int, codec: str, kind: str) -> str:
        return (f"<li><a href='gradio_api/file={html.escape(path)}' download='{html.escape(Path(path).name)}' "
                f"data-codec='{html.escape(codec)}' data-kind='{kind}' data-bytes='{size}'>{html.escape(text)}</a> "
                f"<span class='size'>{kb(size)} ({size:,} bytes)</span></li>")

    coded = "".join(item(path, f"{LABELS.get(codec, codec)} ({Path(path).suffix})", size, codec, "file")
                    for codec, path, size in files)
    pngs = "".join(item(path, f"{LABELS.get(codec, codec)} (.png)", os.path.getsize(path), codec, "png")
                   for path in reconstructions for codec in [Path(path).stem.rsplit(".", 1)[-1]])
    return (f"<div class='downloads'><p><b>Download the files the table measured</b>:</p><ul>{coded}</ul>"
            + (f"<p>Their decoded pixels, as lossless PNG:</p><ul>{pngs}</ul>" if pngs else "") + "</div>")


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
    """The status area: kind is 'idle', 'working', 'ok', 'warn' (done, but a target was out of
    reach) or 'error'; one line per message."""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines if line)
    role = " role='alert'" if kind == "error" else " role='status'"
    title = "<b>Error.</b> " if kind == "error" else ""
    return f"<div class='status status-{kind}'{role}>{title}<ul>{items}</ul></div>"


MATCH_CHOICES = [("the same file size", "size"), ("the same PSNR", "psnr"), ("the same MS-SSIM", "ms_ssim")]


def resolve_match(match: str | None) -> str:
    """The comparison mode ('size', 'psnr' or 'ms_ssim'; empty or None: 'size'); UserError otherwise."""
    match = match or "size"
    if match not in [value for _, value in MATCH_CHOICES]:
        raise UserError(f"Unknown comparison '{str(match)[:40]}' (choose one of: "
                        f"{', '.join(value for _, value in MATCH_CHOICES)}).")
    return match


def missed_target(rows: list[dict], target_bytes: int | None) -> bool:
    """Whether the learned codec's file (the first row) missed a target size it was asked for."""
    return target_bytes is not None and bool(rows[0].get("note"))


def success_lines(rows: list[dict], note: str, seconds: float, target_bytes: int | None = None,
                  match: str = "size") -> list[str]:
    """What a run found, one line each: timing and size (and, for a target, the code size and step
    offset the rate control chose), the downscale note, each codec's note."""
    first = rows[0]
    label = LABELS.get(first["codec"], first["codec"])
    to = {"size": "the same size", "psnr": f"the same PSNR ({first['psnr']:.2f} dB)",
          "ms_ssim": f"the same MS-SSIM ({first['ms_ssim'] or 0:.4f})"}[match]
    lines = [f"Done in {seconds:.1f} s: {label} wrote {first['bytes']:,} bytes "
             f"({first['bpp']:.3f} bpp); every other codec was set to {to}."]
    if missed_target(rows, target_bytes):
        lines.insert(0, f"The target of {target_bytes:,} bytes is out of {label}'s reach on this image: "
                        f"{first['note']}. The table is for the nearest file it makes.")
    if target_bytes is not None:
        lines.append(f"Target {target_bytes:,} bytes: {label} chose code size {first['setting']} "
                     f"({100 * (first['bytes'] / target_bytes - 1):+.1f} % from the target).")
    if note:
        lines.append(note)
    notes = [f"{LABELS.get(r['codec'], r['codec'])}: {r['note']}" for r in rows[missed_target(rows, target_bytes):]
             if r.get("note")]
    within = "size within 3 %" if match == "size" else \
        f"{'PSNR' if match == 'psnr' else 'MS-SSIM'} within {QUALITY_TOLERANCE[match]:g}"
    lines += notes or ([f"All codecs matched the .cyc file's {within}."] if len(rows) > 1 else [])
    return lines


def progress_steps(work: Callable[[Callable[[str], None]], object], show: Callable[[str], object]) -> Iterator:
    """Run `work(report)` in a thread and yield `show(line)` for each line it reports, as it comes;
    the generator returns work's result (`result = yield from progress_steps(...)`), or raises its
    exception. A run that reports what it does can then be shown step by step by a generator."""
    lines: queue.Queue = queue.Queue()
    end, outcome = object(), {}

    def run():
        try:
            outcome["result"] = work(lines.put)
        except BaseException as e:  # re-raised in the caller's thread
            outcome["error"] = e
        finally:
            lines.put(end)

    threading.Thread(target=run, name="compare", daemon=True).start()
    while (line := lines.get()) is not end:
        yield show(line)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


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
#status .status-warn { border-color: #c77700; background: #fff6e5; }
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
.results-table .explained { text-decoration: underline dotted; cursor: help; }
/* A tip (ui.tip_attrs): its words at the foot of the screen while it has the focus, which a tap
   gives it on a phone (where a title never shows), as a click or Tab does elsewhere. */
.results-table thead th.tip { cursor: help; }
.tip:focus { outline: 2px solid #2a8a4a; outline-offset: -2px; }
.tip:focus:not(:focus-visible) { outline-color: #2a8a4a80; }
.tip:focus::after { content: attr(data-tip); position: fixed; left: 8px; right: 8px; bottom: 8px;
  z-index: 1000; max-width: 40em; margin: 0 auto; padding: 8px 12px; border-radius: 8px;
  background: #1f2a24; color: #fff; font-size: 13.5px; font-weight: 400; line-height: 1.4;
  text-align: left; white-space: normal; text-decoration: none; box-shadow: 0 2px 10px #0006; }
.results-table tbody th.c-codec { font-weight: 600; white-space: normal; }
.results-table td.best { font-weight: 700; background: #2a8a4a1f; }
.results-table .star { color: #2a8a4a; }
.legend { font-size: 12.5px; color: var(--body-text-color-subdued); margin: 6px 0 0; }
.legend .best { color: #2a8a4a; }
.verdict { border: 1px solid #2a8a4a; border-radius: 8px; padding: 8px 12px; margin: 0 0 8px;
  background: #2a8a4a14; }
.verdict .verdict-head { margin: 0 0 4px; font-weight: 600; }
.verdict ul { margin: 0; padding-left: 1.2em; }
.verdict li + li { margin-top: 2px; }
.results-table tr.missed { color: var(--body-text-color-subdued); }
.results-table .missed-note { display: block; font-weight: 400; font-size: 10.5px; color: #a05a00; }
.downloads { font-size: 13.5px; margin-top: 8px; }
.downloads p { margin: 6px 0 2px; }
.downloads ul { margin: 0; padding: 0; list-style: none; display: flex; flex-wrap: wrap; gap: 4px 16px; }
.downloads .size { color: var(--body-text-color-subdued); font-variant-numeric: tabular-nums; }
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
