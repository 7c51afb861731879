"""Rate-distortion plots (matplotlib), shared by the app and `python -m train.evaluate`."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cycleapp.core import learned  # noqa: E402
from cycleapp.evaluation import registry  # noqa: E402

LABELS = registry.labels()  # every codec's label, from the registry


def rd_figure(curves: dict[str, dict], marks: dict[str, tuple[float, float]] | None = None,
              metric: str = "psnr", title: str = "", bpp_range: tuple[float, float] | None = None):
    """One curve per codec (bpp vs metric); `marks` are the matched points, drawn as stars.
    `bpp_range`: a log-scaled bpp axis over that range (the app's, around the size it made: on a
    linear axis to 2 bpp the usual 0.1 to 0.5 bpp is a tangle), the metric's axis fitted to it."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    for name, curve in curves.items():
        points = [(b, q) for b, q in zip(curve["bpp"], curve[metric]) if q is not None]
        if not points:
            continue
        ours = name == learned.LEARNED  # drawn on top: where a classical curve runs close, it would hide ours
        line, = ax.plot(*zip(*points), marker="o", markersize=3.5, linewidth=2.2 if ours else 1.4,
                        zorder=3 if ours else 2, label=LABELS.get(name, name))
        if marks and name in marks and marks[name][1] is not None:
            ax.plot(*marks[name], marker="*", markersize=14, color=line.get_color(),
                    markeredgecolor="black", zorder=5)
    if bpp_range:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        ax.set_xlim(*bpp_range)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.1e}"[0] in "25" else ""))
        shown = [q for curve in curves.values() for b, q in zip(curve["bpp"], curve[metric])
                 if q is not None and bpp_range[0] <= b <= bpp_range[1]]
        if shown:
            pad = 0.05 * (max(shown) - min(shown) or 1)
            ax.set_ylim(min(shown) - pad, max(shown) + pad)
    ax.set_xlabel("bits per pixel (8 x file bytes / pixels)" + (", log scale" if bpp_range else ""))
    ax.set_ylabel({"psnr": "PSNR (dB, RGB)", "ms_ssim": "MS-SSIM"}.get(metric, metric))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
