"""Speed benchmark of the app, measured from the API as a user's browser sees it (not a test).

    .venv/bin/python tests/bench_app.py [--runs 3] [--code-size medium] [--codecs all] [--sizes 768,2k,4mp]
    .venv/bin/python tests/bench_app.py --codecs all --sizes 768,2k --tables-only   # issue 30's targets
    .venv/bin/python tests/bench_app.py --codecs all --sizes 2k --tables-only --match ms_ssim   # same quality
    .venv/bin/python tests/bench_app.py --clients 1,5,10,20
    .venv/bin/python tests/bench_app.py --repo /path/to/an/earlier/checkout ...    # before/after
    .venv/bin/python tests/bench_app.py --prior   # matching.PRIOR_BPP, measured again (no app)

Starts `python app.py`, then, with JPEG and JPEG 2000 (the app's defaults; `--codecs all` for the
six: JPEG, JPEG 2000, WebP, HEIF, AVIF, JPEG XL), prints:
- the time to the table (/compare) and to the plot (/compare, then /rd_plot, as the page chains
  them) for a 768x512 photo, a 2K one (2048x1365) and a 4-megapixel one (2448x1632), mosaics of
  the example photos (`--sizes` picks them); every run uses an image the caches have not seen (one
  pixel changed), then one re-run of the same image at another code size shows the cached plot;
- a second visitor's time to the table for a 768x512 photo sent while the first visitor's 4 MP
  plot is being computed (the plot has its own queue, apart from /compare's).
Each size's line gives the app process's CPU seconds per run too (user + system, from /proc): on a
machine that other work keeps busy the wall clock says little, and CPU time compares before/after.

With --clients, instead: what a visitor waits when N visitors press the button at the same moment,
each with a 768x512 photo of their own (comparisons run one at a time, so the last waits for all
the others): the time to the table and to the plot, median, 95th percentile and worst over the N.
"""
import argparse
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_server import app_process  # noqa: E402
from conftest import EXAMPLES  # noqa: E402

CODECS = ["jpeg", "jpeg2000"]
PLOTS = [True]  # --tables-only: no /rd_plot calls, no second visitor
MATCH = ["size"]  # --match: what the other codecs are matched to (size, psnr or ms_ssim)


def mosaic_4mp() -> np.ndarray:
    """2448x1632 (3,995,136 pixels): the example photos tiled 3x3 (some flipped), then resized."""
    photos = [np.array(Image.open(EXAMPLES / n).convert("RGB").resize((768, 512), Image.Resampling.LANCZOS))
              for n in ("kodim23.png", "kodim04.png", "cid22-1025469.png")]
    rows = [np.concatenate([photos[(r + c) % 3][:, ::(-1 if (r + c) % 2 else 1)] for c in range(3)], axis=1)
            for r in range(3)]
    big = np.concatenate(rows, axis=0)
    return np.array(Image.fromarray(big).resize((2448, 1632), Image.Resampling.LANCZOS))


def photo_2k() -> np.ndarray:
    """2048x1365 (2.8 megapixels, a "2K" photo): the 4-megapixel mosaic, resized."""
    return np.array(Image.fromarray(mosaic_4mp()).resize((2048, 1365), Image.Resampling.LANCZOS))


def prior() -> None:
    """Each classical codec's typical bpp at a few settings (`matching.PRIOR_BPP`): the geometric
    mean over six training photos (never the evaluation sets), those over a megapixel downscaled."""
    import glob

    from cycleapp.evaluation import registry

    train = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"
    files = sorted(glob.glob(str(train / "cid22" / "*.png")))[::40][:4] + \
        sorted(glob.glob(str(train / "clic2025" / "*.png")))[::10][:4]
    images = []
    for f in files:
        im = Image.open(f).convert("RGB")
        if im.width * im.height > 1_000_000:
            s = (1_000_000 / (im.width * im.height)) ** 0.5
            im = im.resize((int(im.width * s), int(im.height * s)), Image.Resampling.LANCZOS)
        images.append(np.array(im))
    grid = {"jpeg": [2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90], "webp": [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90],
            "heif": [1, 5, 10, 20, 30, 40, 50, 60, 70, 80], "avif": [1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90],
            "jxl": [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90]}
    print(f"{len(images)} photos: {', '.join(Path(f).name for f in files)}")
    for name, settings in grid.items():
        entry = registry.get(name)
        means = [float(np.exp(np.mean([np.log(8 * len(entry.encode(im, s)) / (im.shape[0] * im.shape[1]))
                                       for im in images]))) for s in settings]
        print(f'    "{name}": (' + ", ".join(f"({s}, {m:.3g})" for s, m in zip(settings, means)) + "),", flush=True)


SIZES = {"768": ("768x512", lambda: np.array(Image.open(EXAMPLES / "kodim23.png").convert("RGB"))),
         "2k": ("2048x1365 (2K)", photo_2k), "4mp": ("2448x1632 (4 MP)", mosaic_4mp)}


def variant(rgb: np.ndarray, i: int, folder: Path, name: str) -> Path:
    """The image with pixel (0, 0) changed: a new image for the plot cache, the same for the codecs."""
    img = rgb.copy()
    img[0, 0] = (img[0, 0].astype(int) + 37 * (i + 1)) % 256
    path = folder / f"{name}-{i}.png"
    Image.fromarray(img).save(path, compress_level=1)
    return path


APP_PID = [0]  # the app's process, whose CPU time each run reports (a busy machine slows the wall clock)


def app_cpu() -> float:
    """Seconds of CPU the app's process has used (user + system, all its threads); 0 where /proc
    cannot tell (not Linux)."""
    try:
        fields = Path(f"/proc/{APP_PID[0]}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def visit(client, path: Path, size: str) -> tuple[float, float]:
    """(seconds to the table, seconds to the plot), as the page runs them one after the other."""
    from gradio_client import handle_file

    t = time.perf_counter()
    out = client.predict(handle_file(str(path)), size, CODECS, "", MATCH[0], api_name="/compare")
    table_s = time.perf_counter() - t
    if not PLOTS[0]:
        return table_s, table_s
    client.predict(handle_file(str(path)), size, CODECS, out[1], api_name="/rd_plot")
    return table_s, time.perf_counter() - t


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value that q of the values are at or under."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def crowd(url: str, n: int, kodak: np.ndarray, folder: Path, size: str) -> None:
    """n visitors at once, each with their own session and photo; prints what they waited."""
    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in range(n)]
    paths = [variant(kodak, 1000 + 100 * n + i, folder, f"crowd{n}") for i in range(n)]
    start, times, refused = threading.Barrier(n), [], []

    def one(client, path):
        start.wait()
        try:
            times.append(visit(client, path, size))
        except Exception as e:  # e.g. the queue is full
            refused.append(f"{type(e).__name__}: {e}"[:120])

    threads = [threading.Thread(target=one, args=(c, p)) for c, p in zip(clients, paths)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    tables, plots = [t for t, _ in times], [p for _, p in times]
    line = f"{n} visitors at once ({wall:.1f} s in all): "
    if times:
        line += (f"from the press to the table {statistics.median(tables):.1f} s median, "
                 f"{percentile(tables, 0.95):.1f} s p95, {max(tables):.1f} s worst; to the plot "
                 f"{statistics.median(plots):.1f} / {percentile(plots, 0.95):.1f} / {max(plots):.1f} s")
    print(line + (f"; {len(refused)} refused ({refused[0]})" if refused else ""), flush=True)
    for c in clients:
        c.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="runs per image size (each on an image new to the cache)")
    p.add_argument("--code-size", default="medium")
    p.add_argument("--clients", help="comma-separated numbers of visitors at once, e.g. 1,5,10,20")
    p.add_argument("--codecs", default=",".join(CODECS), help="comma-separated codec names, or 'all'")
    p.add_argument("--tables-only", action="store_true", help="time the tables only (no plots)")
    p.add_argument("--match", default="size", choices=["size", "psnr", "ms_ssim"],
                   help="compare at the same file size (the default) or the same quality")
    p.add_argument("--sizes", default="768,4mp", help=f"comma-separated image sizes, of {', '.join(SIZES)}")
    p.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]),
                   help="the checkout whose app.py runs (an earlier one, for a before/after timing)")
    p.add_argument("--prior", action="store_true", help="print matching.PRIOR_BPP measured again, and stop")
    args = p.parse_args()
    if args.prior:
        return prior()
    from cycleapp.evaluation import registry

    PLOTS[0] = not args.tables_only
    MATCH[0] = args.match
    CODECS[:] = registry.matchable() if args.codecs == "all" else args.codecs.split(",")
    from gradio_client import Client

    folder = Path(tempfile.mkdtemp(prefix="cyclecodec-bench-"))
    kodak = np.array(Image.open(EXAMPLES / "kodim23.png").convert("RGB"))
    big = mosaic_4mp()
    images = [(SIZES[k][0], SIZES[k][1]()) for k in args.sizes.split(",")]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cyclecodec-bench-gradio-") as gradio_dir, \
            app_process(gradio_dir, repo=Path(args.repo)) as (proc, url):
        APP_PID[0] = proc.pid
        print(f"app started in {time.perf_counter() - t0:.1f} s ({args.repo}); load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores", flush=True)
        client = Client(url, verbose=False)
        visit(client, variant(kodak, 99, folder, "warm"), args.code_size)  # loads every checkpoint
        if args.clients:
            for n in map(int, args.clients.split(",")):
                crowd(url, n, kodak, folder, args.code_size)
            return
        for name, rgb in images:
            times, cpu = [], []
            for i in range(args.runs):
                before = app_cpu()
                times.append(visit(client, variant(rgb, i, folder, name[:4]), args.code_size))
                cpu.append(app_cpu() - before)
            tables, plots = [t for t, _ in times], [p - t for t, p in times]
            print(f"{name}, {' + '.join(CODECS)}, code size {args.code_size}"
                  + (f", at the same {args.match.upper().replace('_', '-')}" if args.match != "size" else "")
                  + f", {args.runs} runs: "
                  f"table {statistics.median(tables):.1f} s median (max {max(tables):.1f}), "
                  f"plot {statistics.median(plots):.1f} s after the table (max {max(plots):.1f}); the app's CPU "
                  f"{statistics.median(cpu):.1f} s a run; load average {os.getloadavg()[0]:.2f}", flush=True)
            if not PLOTS[0]:
                continue
            other = "small" if args.code_size != "small" else "tiny"
            table_s, plot_s = visit(client, variant(rgb, 0, folder, name[:4]), other)
            print(f"  same image again at '{other}' (cached curves): table {table_s:.1f} s, "
                  f"plot {plot_s - table_s:.1f} s after the table")
        if not PLOTS[0]:
            return

        # Two visitors: A's 4 MP plot is running when B sends a 768x512 photo.
        a, b = Client(url, verbose=False), Client(url, verbose=False)
        from gradio_client import handle_file

        path_a = variant(big, 50, folder, "visitor-a")
        out = a.predict(handle_file(str(path_a)), args.code_size, CODECS, api_name="/compare")
        started = {}

        def plot_a():
            started["t"] = time.perf_counter()
            a.predict(handle_file(str(path_a)), args.code_size, CODECS, out[1], api_name="/rd_plot")
            started["done"] = time.perf_counter()

        thread = threading.Thread(target=plot_a)
        thread.start()
        time.sleep(0.5)
        table_b, plot_b = visit(b, variant(kodak, 50, folder, "visitor-b"), args.code_size)
        thread.join()
        print(f"second visitor (768x512), sent 0.5 s into the first visitor's 4 MP plot: table in "
              f"{table_b:.1f} s, plot {plot_b - table_b:.1f} s after it; the first visitor's plot took "
              f"{started['done'] - started['t']:.1f} s")


if __name__ == "__main__":
    main()
