"""The app's rate-distortion plot, bounded in time.

The library's full sweeps (`sweeps.curve`) take 8 to 11 settings per codec on the full image:
minutes on a 4-megapixel upload. The plot shows PSNR only, so it asks `sweeps.curve` for bpp and
PSNR alone (metrics are computed when read, so no SSIM is paid for), over every other setting of
each codec's sweep (5 to 7 per codec, the same 0.02 to 2 bpp range), on a copy of at most
PLOT_PIXELS pixels (Kodak-sized images are plotted as they are). Curves are cached per image and
codec, so running the same image at another code size or with one more codec costs only the rest.
The plot says what it was computed on.

Tables come first: a plot is something to look at after the table, and the two share the machine's
cores, so while any comparison runs (`making_a_table`) a plot waits before its next point. A
visitor's table then waits for at most one point of someone else's plot, not the whole plot.
"""
from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from cycleapp.core import learned
from cycleapp.evaluation import registry
from cycleapp.evaluation.plots import LABELS, rd_figure
from cycleapp.evaluation.sweeps import curve as sweep_curve
from cycleapp.app.ui import UserError, downscale

PLOT_PIXELS = 400_000  # 768x512 is 393,216: Kodak images are plotted at full size
CACHE_SIZE = 64  # curves (one image, one codec)
KEYS = ("bpp", "psnr", "setting")  # what a plotted point holds (the learned codec's setting: its code size)


def plot_settings(name: str) -> list:
    """Every other setting of a codec's sweep, the last one always included (the learned codec:
    its one setting, at every code size)."""
    s = list(registry.family(name)[0].settings)
    return s[::2] + ([s[-1]] if (len(s) - 1) % 2 else [])


_cache: OrderedDict[tuple[str, str], list[dict]] = OrderedDict()
_lock = threading.Lock()
_tables = 0  # comparisons running now
_no_tables = threading.Condition()


@contextmanager
def making_a_table():
    """Held while a comparison makes its table: plots pause at their next point until none runs."""
    global _tables
    with _no_tables:
        _tables += 1
    try:
        yield
    finally:
        with _no_tables:
            _tables -= 1
            _no_tables.notify_all()


def wait_for_tables() -> None:
    with _no_tables:
        _no_tables.wait_for(lambda: _tables == 0)


def image_key(rgb: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()


def curve(name: str, rgb: np.ndarray, key: str) -> list[dict]:
    """One codec's points on this image, from the cache when this image was plotted before."""
    with _lock:
        if (key, name) in _cache:
            _cache.move_to_end((key, name))
            return _cache[(key, name)]
    points = sweep_curve(name, rgb, plot_settings(name), KEYS, before_each=wait_for_tables)
    with _lock:
        _cache[(key, name)] = points
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return points


def table_marks(table) -> tuple[dict[str, tuple[float, float]], str | None]:
    """The stars of a /compare table (codec -> (bpp, PSNR)) and the code size its .cyc file used
    (None for an empty table). `table` is the table's payload, {"headers": [...], "data": [rows]},
    as the page or an API call sends it; UserError saying what is wrong if it is not such a table."""
    if table is None:
        return {}, None
    if not isinstance(table, dict):
        raise UserError("The table must be the one that compare returned (headers and rows).")
    rows, headers = table.get("data"), table.get("headers")
    if not rows:
        return {}, None
    if not isinstance(rows, list) or not isinstance(headers, list) or not all(isinstance(h, str) for h in headers):
        raise UserError("The table must be the one that compare returned (headers and rows).")
    missing = [k for k in ("codec", "setting", "bpp", "psnr") if k not in (headers or [])]
    if missing:
        raise UserError(f"The table has no {', '.join(missing)} column: pass the table that compare returned.")
    marks, known = {}, registry.names()
    for i, row in enumerate(rows, 1):
        if not isinstance(row, list) or len(row) != len(headers):
            raise UserError(f"Row {i} of the table does not have the table's {len(headers)} columns.")
        record = dict(zip(headers, row))
        if record["codec"] not in known:
            raise UserError(f"Row {i} of the table names an unknown codec ({str(record['codec'])[:40]!r}).")
        if record["psnr"] in (None, "n/a"):  # a metric that does not apply, or no file: no star
            continue
        bpp, psnr = (v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                     else None for v in (record["bpp"], record["psnr"]))
        if bpp is None or psnr is None or bpp < 0:
            raise UserError(f"Row {i} of the table has no usable bpp and PSNR ({str(record['bpp'])[:20]!r}, "
                            f"{str(record['psnr'])[:20]!r}).")
        marks[record["codec"]] = (float(bpp), float(psnr))
    first = dict(zip(headers, rows[0]))
    if first["codec"] != learned.LEARNED:
        raise UserError(f"The table's first row must be {LABELS[learned.LEARNED]}'s, as compare returns it.")
    return marks, str(first["setting"]).split(",")[0]


def rd_plot(rgb: np.ndarray, codecs: list[str], code_size: str,
            marks: dict[str, tuple[float, float]] | None = None):
    """The figure: each codec's PSNR over bpp on this image (or on a downscaled copy, said so).

    `marks` are the table's matched points (bpp, PSNR); they are starred when the curves were
    computed on the same pixels. On a downscaled copy the table's numbers do not apply, so the
    learned codec's point at the code size `code_size` is starred instead and the plot says why.
    """
    import matplotlib.pyplot as plt

    plt.close("all")  # the previous plot has been sent by now (plots run one at a time)
    h, w = rgb.shape[:2]
    copy = downscale(rgb, PLOT_PIXELS)
    key = image_key(copy)
    ours = learned.LEARNED
    names = [ours, *[c for c in codecs if c in registry.matchable()]]
    curves = {n: curve(n, copy, key) for n in names}
    columns = {n: {k: [p[k] for p in pts] for k in ("bpp", "psnr")} for n, pts in curves.items()}
    settings = ", ".join(f"{LABELS[n]} {len(plot_settings(n))}" for n in names if n != ours)
    if copy is rgb:
        what = f"Computed on this image ({w}x{h})"
        stars = {n: m for n, m in (marks or {}).items() if n in columns}
        star_note = f"stars: the files in the table ('{code_size}' size)"
    else:
        what = (f"Computed on a {copy.shape[1]}x{copy.shape[0]} copy (downscaled from {w}x{h} to keep "
                f"the plot fast)")
        point = {p["setting"]: p for p in curves[ours]}.get(code_size)
        stars = {ours: (point["bpp"], point["psnr"])} if point else {}
        star_note = f"star: the '{code_size}' size on this copy (the table's numbers are for {w}x{h})"
    # A log bpp axis from a quarter to four times the size the table's file has (or the code
    # size's, on a copy): the part of the curves that answers the question asked.
    centre = (stars.get(ours) or (None,))[0]
    span = (centre / 4, centre * 4) if centre else None
    fig = rd_figure(columns, stars, title="This image: higher and further left is better", bpp_range=span)
    sweep = f"{LABELS[ours]}: its {len(curves[ours])} sizes" + (f"; settings swept: {settings}" if settings else "")
    fig.text(0.01, 0.005, f"{what}; {star_note}.\n{sweep}.", fontsize=7.5, va="bottom", ha="left",
             wrap=True)
    fig.subplots_adjust(bottom=0.2)
    return fig
