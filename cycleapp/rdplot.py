"""The app's rate-distortion plot, bounded in time.

The library's sweeps (`sweeps.classical_curve`, `sweeps.cycle_curve`) measure MS-SSIM at every point
and sweep 8 to 11 settings per codec on the full image: minutes on a 4-megapixel upload. The plot
shows PSNR only, so this module measures bpp and PSNR alone, sweeps every other setting of
`sweeps.SWEEP` (5 or 6 per codec, the same 0.05 to 2 bpp range), and works on a copy of at most
PLOT_PIXELS pixels (Kodak-sized images are plotted as they are). Curves are cached per image and
codec, so running the same image at another code size or with one more codec costs only the rest.
The plot says what it was computed on.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

from . import checkpoint as ckpts
from . import codec
from .classical import CODECS
from .metrics import bpp, psnr
from .plots import LABELS, rd_figure
from .sweeps import SWEEP
from .ui import downscale

PLOT_PIXELS = 400_000  # 768x512 is 393,216: Kodak images are plotted at full size
CACHE_SIZE = 64  # curves (one image, one codec)


def plot_settings(name: str) -> list:
    """Every other setting of the library's sweep, the last one always included."""
    s = SWEEP[name]
    return s[::2] + ([s[-1]] if (len(s) - 1) % 2 else [])


def _point(rgb: np.ndarray, data: bytes, decoded: np.ndarray) -> dict:
    h, w = rgb.shape[:2]
    return {"bpp": bpp(len(data), w, h), "psnr": psnr(rgb, decoded)}


def classical_points(name: str, rgb: np.ndarray) -> list[dict]:
    c = CODECS[name]
    points = []
    for s in plot_settings(name):
        data = c.encode(rgb, s)
        points.append(_point(rgb, data, c.decode(data)))
    return sorted(points, key=lambda p: p["bpp"])


def cycle_points(rgb: np.ndarray) -> list[dict]:
    points = []
    for path in ckpts.available():
        ck = ckpts.by_name(path.stem)
        data = codec.encode(ck, rgb)
        points.append(dict(_point(rgb, data, codec.decode(data, ck)), size=path.stem))
    return sorted(points, key=lambda p: p["bpp"])


_cache: OrderedDict[tuple[str, str], list[dict]] = OrderedDict()
_lock = threading.Lock()


def image_key(rgb: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()


def curve(name: str, rgb: np.ndarray, key: str) -> list[dict]:
    """One codec's points on this image, from the cache when this image was plotted before."""
    with _lock:
        if (key, name) in _cache:
            _cache.move_to_end((key, name))
            return _cache[(key, name)]
    points = cycle_points(rgb) if name == "cycle" else classical_points(name, rgb)
    with _lock:
        _cache[(key, name)] = points
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return points


def rd_plot(rgb: np.ndarray, codecs: list[str], code_size: str,
            marks: dict[str, tuple[float, float]] | None = None):
    """The figure: each codec's PSNR over bpp on this image (or on a downscaled copy, said so).

    `marks` are the table's matched points (bpp, PSNR); they are starred when the curves were
    computed on the same pixels. On a downscaled copy the table's numbers do not apply, so the
    cycle model's point at the chosen size is starred instead and the plot says why.
    """
    import matplotlib.pyplot as plt

    plt.close("all")  # the previous plot has been sent by now (plots run one at a time)
    h, w = rgb.shape[:2]
    copy = downscale(rgb, PLOT_PIXELS)
    key = image_key(copy)
    names = ["cycle", *[c for c in codecs if c in CODECS]]
    curves = {n: curve(n, copy, key) for n in names}
    columns = {n: {k: [p[k] for p in pts] for k in ("bpp", "psnr")} for n, pts in curves.items()}
    settings = ", ".join(f"{LABELS[n]} {len(plot_settings(n))}" for n in names if n != "cycle")
    if copy is rgb:
        what = f"Computed on this image ({w}x{h})"
        stars = {n: m for n, m in (marks or {}).items() if n in columns}
        star_note = f"stars: the files in the table ('{code_size}' size)"
    else:
        what = (f"Computed on a {copy.shape[1]}x{copy.shape[0]} copy (downscaled from {w}x{h} to keep "
                f"the plot fast)")
        cycle = {p.get("size"): p for p in curves["cycle"]}.get(code_size)
        stars = {"cycle": (cycle["bpp"], cycle["psnr"])} if cycle else {}
        star_note = f"star: the '{code_size}' size on this copy (the table's numbers are for {w}x{h})"
    fig = rd_figure(columns, stars, title="This image: higher and further left is better")
    sweep = f"CycleCodec: its {len(curves['cycle'])} sizes" + (f"; settings swept: {settings}" if settings else "")
    fig.text(0.01, 0.005, f"{what}; {star_note}.\n{sweep}.", fontsize=7.5, va="bottom", ha="left",
             wrap=True)
    fig.subplots_adjust(bottom=0.2)
    return fig
