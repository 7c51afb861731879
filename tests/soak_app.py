"""Memory soak of the app (a command, not a test: it takes minutes).

    .venv/bin/python tests/soak_app.py [--warmup 150] [--sequential 200] [--concurrent 12] [--size 768x512]

Starts `python app.py` (a Gradio folder of its own), then sends /compare requests as API clients
do, with JPEG and JPEG 2000 (the page's defaults) at the middle code size:
- `--warmup` comparisons, not counted: the app keeps earlier results for re-runs (`compare.Kept`,
  up to 400 MB of files, reconstructions and originals, about 7 MB a comparison counted at the default
  size: full after about 57), and its memory grows by design until that cache is full; then
- `--sequential` comparisons one after the other from one client, then
- `--concurrent` comparisons sent at the same moment by as many clients (sessions) of their own.
Each image is an example photo cropped and resized to `--size`, with one pixel changed per request
so that no two requests send the same file. The app's resident memory (RSS, the process and any
children, read from /proc, or from `ps` where there is no /proc) is sampled four times a second
throughout, and once after each sequential comparison.

It prints the RSS after the first 50 and the last 50 sequential comparisons (median and max), the
highest RSS seen in each phase, and exits 1 if any comparison failed, if the RSS ever reached
`--limit-mb` (2 GB), or if the median of the last 50 is more than `--growth` (5 %) over the median
of the first 50.
"""
import argparse
import statistics
import subprocess
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
WINDOW = 50  # the first 50 sequential comparisons against the last 50


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants, in MB (10^6 bytes)."""
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True).stdout
        return int(out.split()[0]) * 1024 / 1e6 if out.split() else 0.0
    total = 0.0
    try:
        for line in (proc / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024 / 1e6
        for task in (proc / "task").iterdir():
            for child in (task / "children").read_text().split():
                total += rss_mb(int(child))
    except (OSError, ValueError):  # a child that ended meanwhile
        pass
    return total


class Sampler(threading.Thread):
    """RSS four times a second; the highest value seen in each phase."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.phase, self.peak, self.stopped = pid, "start", {}, threading.Event()

    def run(self):
        while not self.stopped.is_set():
            value = rss_mb(self.pid)
            self.peak[self.phase] = max(self.peak.get(self.phase, 0.0), value)
            time.sleep(0.25)


def images(size: tuple[int, int], count: int, folder: Path, name: str) -> list[Path]:
    """`count` PNG files: the example photos in turn at `size`, each with pixel (0, 0) changed (no two
    alike for up to 256 times as many as there are photos)."""
    photos = [np.array(Image.open(p).convert("RGB").resize(size, Image.Resampling.LANCZOS))
              for p in sorted(EXAMPLES.glob("*.png"))]
    paths = []
    for i in range(count):
        img = photos[i % len(photos)].copy()
        img[0, 0] = (img[0, 0].astype(int) + 1 + i) % 256
        path = folder / f"{name}-{i}.png"
        Image.fromarray(img).save(path, compress_level=1)
        paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warmup", type=int, default=150, help="comparisons that fill the app's cache first")
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=12)
    parser.add_argument("--size", default="768x512", help="WIDTHxHEIGHT of the images sent")
    parser.add_argument("--code-size", default="medium")
    parser.add_argument("--limit-mb", type=float, default=2000)
    parser.add_argument("--growth", type=float, default=0.05, help="largest growth allowed, a fraction")
    args = parser.parse_args()
    if args.sequential < 2:
        parser.error("--sequential must be at least 2")
    window = min(WINDOW, args.sequential // 2)  # fewer for a short trial run
    size = tuple(int(v) for v in args.size.lower().split("x"))

    from gradio_client import Client, handle_file

    failures = []
    with tempfile.TemporaryDirectory(prefix="cyclecodec-soak-") as tmp, app_process(tmp) as (proc, url):
        folder = Path(tmp) / "images"
        folder.mkdir()
        sent = images(size, args.warmup + args.sequential + args.concurrent, folder, "soak")  # no two alike
        warmup, sequential = sent[:args.warmup], sent[args.warmup:args.warmup + args.sequential]
        concurrent = sent[args.warmup + args.sequential:]
        sampler = Sampler(proc.pid)
        sampler.start()
        print(f"app started: pid {proc.pid}, RSS {rss_mb(proc.pid):.0f} MB; {args.warmup} + {args.sequential} "
              f"sequential comparisons of {size[0]}x{size[1]} images ({', '.join(CODECS)}, {args.code_size})",
              flush=True)
        client = Client(url, verbose=False)
        for phase, paths in (("warmup", warmup), ("sequential", sequential)):
            sampler.phase, after_each = phase, []
            start = time.perf_counter()
            for i, path in enumerate(paths):
                try:
                    client.predict(handle_file(str(path)), args.code_size, CODECS, api_name="/compare")
                except Exception as e:  # counted and reported, the soak goes on
                    failures.append(f"{phase} {i}: {type(e).__name__}: {e}")
                after_each.append(rss_mb(proc.pid))
                if (i + 1) % 25 == 0:
                    print(f"  {phase}: {i + 1} done in {time.perf_counter() - start:.0f} s, RSS {after_each[-1]:.0f} MB",
                          flush=True)
        seq_seconds = time.perf_counter() - start

        sampler.phase = "concurrent"
        clients = [Client(url, verbose=False) for _ in concurrent]
        start = time.perf_counter()
        jobs = [c.submit(handle_file(str(p)), args.code_size, CODECS, api_name="/compare")
                for c, p in zip(clients, concurrent)]
        for i, job in enumerate(jobs):
            try:
                job.result(timeout=1800)
            except Exception as e:
                failures.append(f"concurrent {i}: {type(e).__name__}: {e}")
        con_seconds = time.perf_counter() - start
        after_concurrent = rss_mb(proc.pid)
        sampler.stopped.set()
        sampler.join()

    first, last = after_each[:window], after_each[-window:]
    growth = statistics.median(last) / statistics.median(first) - 1
    peak = max(sampler.peak.values())
    print(f"\n{args.warmup} comparisons to fill the cache, {args.sequential} sequential comparisons in "
          f"{seq_seconds:.0f} s, then {args.concurrent} "
          f"concurrent in {con_seconds:.0f} s; {len(failures)} failed")
    print(f"RSS after the first {window}: median {statistics.median(first):.0f} MB, max {max(first):.0f} MB")
    print(f"RSS after the last {window}:  median {statistics.median(last):.0f} MB, max {max(last):.0f} MB "
          f"(growth {100 * growth:+.1f} %)")
    print(f"RSS after the concurrent ones: {after_concurrent:.0f} MB; highest seen: "
          + ", ".join(f"{phase} {value:.0f} MB" for phase, value in sampler.peak.items()))
    problems = failures[:5]
    if peak >= args.limit_mb:
        problems.append(f"RSS reached {peak:.0f} MB, the limit is {args.limit_mb:.0f} MB")
    if growth > args.growth:
        problems.append(f"RSS grew {100 * growth:.1f} % from the first {window} to the last {window} "
                        f"(at most {100 * args.growth:.0f} % allowed)")
    for problem in problems:
        print("FAIL:", problem)
    print("PASS" if not problems else "FAIL")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
