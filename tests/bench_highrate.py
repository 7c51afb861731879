"""Speed of the high rates and of lossless against JPEG 2000, on one photo, in one run.

    python tests/bench_highrate.py ../shared/data/dev/clic2025-val/22ea12c903e41583b7c469cb86040157.png

Prints, best of `--runs`: JPEG 2000 at 2 bpp (encode, decode); CycleCodec with `--target-bytes` at
2 bpp (the rate control's search and its one file's decode), a single encode at the setting that
search chose, the learned transform's part of those (its analysis with the rounding of the code, its
synthesis of the base's pixels), and lossless (encode, decode); each CycleCodec time also as a multiple of JPEG 2000's
encode + decode; the process's peak memory after the lossy files and at the end. It keeps freed memory
for reuse as the command line does (`cycleapp.core.allocator`).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cycleapp import api  # noqa: E402
from cycleapp.core import codec  # noqa: E402
from cycleapp.core.allocator import reuse_freed_memory  # noqa: E402
from cycleapp.core import learned  # noqa: E402
from cycleapp.core.rate import match_learned  # noqa: E402
from cycleapp.evaluation import registry  # noqa: E402
from cycleapp.imageio import read_image  # noqa: E402


def best(runs: int, f):
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("image")
    p.add_argument("--bpp", type=float, default=2.0)
    p.add_argument("--runs", type=int, default=2)
    args = p.parse_args()
    reuse_freed_memory()  # as the command line does
    rgb = read_image(args.image).rgb
    pixels = rgb.shape[0] * rgb.shape[1]
    target = round(args.bpp * pixels / 8)
    j2k = registry.get("jpeg2000")
    j2k_encode, data = best(args.runs, lambda: j2k.encode(rgb, args.bpp))
    j2k_decode, _ = best(args.runs, lambda: j2k.decode(data))
    reference = j2k_encode + j2k_decode
    print(f"{args.image}: {rgb.shape[1]}x{rgb.shape[0]}")
    print(f"JPEG 2000 at {args.bpp} bpp: encode {j2k_encode:.2f} s, decode {j2k_decode:.2f} s "
          f"({8 * len(data) / pixels:.3f} bpp)")
    search, m = best(args.runs, lambda: match_learned(rgb, target))
    decode, _ = best(args.runs, lambda: codec.decode(m.data))
    print(f"CycleCodec --target-bytes at {args.bpp} bpp: search and encode {search:.2f} s, decode {decode:.2f} s "
          f"({8 * len(m.data) / pixels:.3f} bpp, {learned.by_name(m.variant).describe(m.setting)}): "
          f"{(search + decode) / reference:.1f}x JPEG 2000")
    entry = learned.by_name(m.variant)
    once, _ = best(args.runs, lambda: entry.encode(rgb, m.setting))
    print(f"CycleCodec, one encode at that setting: {once:.2f} s; with its decode "
          f"{(once + decode) / reference:.1f}x JPEG 2000")
    if isinstance(entry, learned.LayeredCodec):  # (its base's code size and tiles)
        ckpt, shift, tiling = entry.checkpoint, entry.step_shift, codec.tiling_of(entry.layer(m.setting)[0])
    else:  # a code size's own file (a low --bpp)
        ckpt, shift, tiling = entry.checkpoint, -int(m.setting), codec.square_tiles
    analysis, code = best(args.runs, lambda: codec.quantized_code(ckpt, rgb, step_shift=shift))
    synthesis, _ = best(args.runs, lambda: codec.reconstruct_from_code(ckpt, code, *rgb.shape[:2], shift, tiling))
    print(f"of which the learned transform alone: analysis {analysis:.2f} s, synthesis {synthesis:.2f} s (in the "
          f"encode and again in the decode): {(analysis + 2 * synthesis) / reference:.1f}x JPEG 2000")
    print(f"peak memory of this process so far (the search and the single encodes): {peak_gb():.2f} GB")
    encode, lossless = best(args.runs, lambda: api.encode(rgb, lossless=True))
    decode, _ = best(args.runs, lambda: codec.decode(lossless))
    print(f"CycleCodec lossless: encode {encode:.2f} s, decode {decode:.2f} s ({8 * len(lossless) / pixels:.3f} bpp): "
          f"{(encode + decode) / reference:.1f}x JPEG 2000")
    print(f"peak memory of this process: {peak_gb():.2f} GB")


def peak_gb() -> float:
    """The process's peak resident memory (Linux reports it in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


if __name__ == "__main__":
    main()
