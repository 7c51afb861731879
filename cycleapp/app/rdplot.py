"""The app's rate-distortion plot, bounded in time.

The library's full sweeps (`sweeps.curve`) take 8 to 11 settings per codec on the full image:
minutes on a 4-megapixel upload. The plot shows PSNR only, so it asks `sweeps.curve` for bpp and
PSNR alone (metrics are computed when read, so no SSIM is paid for), over every other setting of
each codec's sweep (5 to 7 per codec, the same 0.02 to 2 bpp range), on a copy of at most
PLOT_PIXELS pixels (Kodak-sized images are plotted as they are), where the learned codec's file of
the table is made again, so that its star lies among the curves' numbers. Curves are kept per image
and codec (`Plots`, one per app), so running the same image at another code size or with one more
codec costs only the rest. The plot says what it was computed on, under it.

Tables come first: a plot is something to look at after the table, and the two share the machine's
cores, so while any comparison runs (`Plots.making_a_table`) a plot waits before its next point. A
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
from cycleapp.evaluation.measure import measure
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


class Plots:
    """The app's plots: the curves measured so far (per image and codec, at most CACHE_SIZE), and
    the count of comparisons running now, which plots wait for (tables first). One per app."""

    def __init__(self, cache_size: int = CACHE_SIZE):
        self.cache_size = cache_size
        self._curves: OrderedDict[tuple[str, str], list[dict]] = OrderedDict()
        self._lock = threading.Lock()
        self._tables = 0  # comparisons running now
        self._no_tables = threading.Condition()

    @contextmanager
    def making_a_table(self):
        """Held while a comparison makes its table: plots pause at their next point until none runs."""
        with self._no_tables:
            self._tables += 1
        try:
            yield
        finally:
            with self._no_tables:
                self._tables -= 1
                self._no_tables.notify_all()

    def wait_for_tables(self) -> None:
        with self._no_tables:
            self._no_tables.wait_for(lambda: self._tables == 0)

    def curve(self, name: str, rgb: np.ndarray, key: str) -> list[dict]:
        """One codec's points on this image, from the cache when this image was plotted before."""
        with self._lock:
            if (key, name) in self._curves:
                self._curves.move_to_end((key, name))
                return self._curves[(key, name)]
        points = sweep_curve(name, rgb, plot_settings(name), KEYS, before_each=self.wait_for_tables)
        with self._lock:
            self._curves[(key, name)] = points
            while len(self._curves) > self.cache_size:
                self._curves.popitem(last=False)
        return points

    def rd_plot(self, rgb: np.ndarray, codecs: list[str], made: tuple | str,
                marks: dict[str, tuple[float, float]] | None = None):
        """`rd_plot` with this app's curves."""
        return rd_plot(rgb, codecs, made, marks, self)


def image_key(rgb: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()


def learned_file(setting: str) -> tuple:
    """The learned codec's entry and setting that the table's setting cell describes ('medium',
    'medium, steps x0.302', 'huge + DCT layer, step 4', 'lossless'): the file the
    table measured can be made again on another image. UserError if no entry describes it so."""
    for entry in [*learned.presets(), learned.layered()]:
        search = entry.search
        for value in (range(int(search.low), int(search.high) + 1) if search else [entry.default]):
            if entry.describe(value) == setting:
                return entry, value
    for name in learned.mode_names():
        if learned.by_name(name).describe(0) == setting:
            return learned.by_name(name), 0
    raise UserError(f"The table's first row has a setting that {LABELS[learned.LEARNED]} does not make "
                    f"({setting[:60]!r}): pass the table that compare returned.")


def table_marks(table) -> tuple[dict[str, tuple[float, float]], str | None]:
    """The stars of a /compare table (codec -> (bpp, PSNR)) and the setting its .cyc file used, as
    the table says it ('medium, steps x0.302'; None for an empty table). `table` is the table's payload, {"headers": [...], "data": [rows]},
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
    return marks, str(first["setting"])


def rd_plot(rgb: np.ndarray, codecs: list[str], made: tuple | str,
            marks: dict[str, tuple[float, float]] | None = None, plots: Plots | None = None):
    """The figure: each codec's PSNR over bpp on this image (or on a downscaled copy, said so).

    `made` is the learned codec's file the table measured, as (entry, setting) (`learned_file`), or a
    code size. `marks` are the table's points (bpp, PSNR); they are starred when the curves are
    computed on the same pixels. On a downscaled copy the table's numbers do not apply, so the same
    file is made again on the copy (the same code size and steps) and starred, and the plot says so.
    The bpp axis is logarithmic, from a quarter to four times the starred file's.
    """
    import matplotlib.pyplot as plt

    plots = plots or Plots()
    if isinstance(made, str):
        made = (learned.by_name(made), learned.by_name(made).default)
    entry, setting = made
    described = entry.describe(setting)
    plt.close("all")  # the previous plot has been sent by now (plots run one at a time)
    h, w = rgb.shape[:2]
    copy = downscale(rgb, PLOT_PIXELS)
    key = image_key(copy)
    ours = learned.LEARNED
    names = [ours, *[c for c in codecs if c in registry.matchable()]]
    curves = {n: plots.curve(n, copy, key) for n in names}
    columns = {n: {k: [p[k] for p in pts] for k in ("bpp", "psnr")} for n, pts in curves.items()}
    settings = ", ".join(f"{LABELS[n]} {len(plot_settings(n))}" for n in names if n != ours)
    if copy is rgb and marks:
        what = f"Computed on this image ({w}x{h}): the numbers are the table's"
        stars = {n: m for n, m in marks.items() if n in columns}
        star_note = f"stars: the files in the table ({LABELS[ours]}: {described})"
    else:
        plots.wait_for_tables()
        again = measure(entry, copy, setting)
        stars = {ours: (again.bpp, again.psnr)} if again.ok else {}
        if copy is rgb:
            what = f"Computed on this image ({w}x{h})"
            star_note = f"star: {LABELS[ours]}'s file ({described})"
        else:
            what = (f"Computed on a {copy.shape[1]}x{copy.shape[0]} copy (downscaled from {w}x{h} to keep "
                    f"the plot fast): its numbers differ from the table's, which are for {w}x{h}")
            star_note = f"star: {LABELS[ours]}'s file of the table made again on this copy ({described})"
    # A log bpp axis from a quarter to four times the starred file's: the part of the curves that
    # answers the question asked (on a linear axis to 2 bpp, 0.1 to 0.5 bpp is a tangle).
    centre = (stars.get(ours) or (None,))[0]
    span = (centre / 4, centre * 4) if centre else None
    fig = rd_figure(columns, stars, title="This image: higher and further left is better", bpp_range=span)
    sweep = f"{LABELS[ours]}: its {len(curves[ours])} sizes" + (f"; settings swept: {settings}" if settings else "")
    fig.text(0.01, 0.005, f"{what}; {star_note}.\n{sweep}.", fontsize=7.5, va="bottom", ha="left",
             wrap=True)
    fig.subplots_adjust(bottom=0.22)
    return fig
