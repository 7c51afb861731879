"""Command line: `python -m cycleapp sizes | encode | decode | compare` (installed: `cyclecodec`)."""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from cycleapp.api import TargetNotReached, decode, encode
from cycleapp.core import checkpoint as ckpts
from cycleapp.core.allocator import reuse_freed_memory
from cycleapp.core import learned
from cycleapp.evaluation import registry
from cycleapp.evaluation.compare import LIMIT_NOTE, MAX_PIXELS as COMPARE_MAX_PIXELS, compare, format_table
from cycleapp.imageio import png_bytes, read_image, write_atomic


def parser() -> argparse.ArgumentParser:
    prog = "cyclecodec" if os.path.basename(sys.argv[0]) == "cyclecodec" else "python -m cycleapp"
    p = argparse.ArgumentParser(prog=prog, description="CycleCodec: a learned image codec.")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("sizes", help="list the code sizes (name, code shape, typical bpp)")
    e = sub.add_parser("encode", help="compress an image into a .cyc file")
    e.add_argument("input")
    e.add_argument("output")
    size_options(e)
    d = sub.add_parser("decode", help="decompress a .cyc file into a PNG")
    d.add_argument("input")
    d.add_argument("output")
    c = sub.add_parser("compare", help="the cycle model against other codecs at the same file size")
    c.add_argument("input")
    size_options(c)
    c.add_argument("--codecs", default=",".join(registry.matchable()),
                   help=f"comma-separated, from {','.join(registry.matchable())} (default: all)")
    return p


def size_options(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--code-size", help="a preset (python -m cycleapp sizes)")
    which.add_argument("--target-bytes", type=int, help="a file size, from the smallest file to the "
                                                         "lossless one: within 3 %% of it where the codec can")
    if p.prog.endswith("encode"):
        which.add_argument("--lossless", action="store_true", help="decode to the very same pixels")
        which.add_argument("--max-error", type=max_error, metavar="N",
                           help=f"every pixel of every channel within N of the input "
                                f"({learned.NEAR_LOSSLESS_RANGE[0]} to {learned.NEAR_LOSSLESS_RANGE[1]})")


def max_error(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = None
    lo, hi = learned.NEAR_LOSSLESS_RANGE
    if n is None or not lo <= n <= hi:
        raise argparse.ArgumentTypeError(f"must be a whole number from {lo} to {hi}")
    return n


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    reuse_freed_memory()
    try:
        if args.command == "sizes":
            paths = ckpts.available()
            for path in paths:
                print(ckpts.by_name(path.stem).describe())
            lo, hi = learned.NEAR_LOSSLESS_RANGE  # (these need no checkpoint)
            print(f"{learned.LOSSLESS}\tpredicted pixel layer: the very same pixels")
            print(f"{learned.NEAR_LOSSLESS}N\tpredicted pixel layer: every pixel within N ({lo} to {hi})")
            if not paths:
                raise ValueError(f"no checkpoints found in {ckpts.checkpoint_dir()}: only the modes above")
        elif args.command == "encode":
            rgb = read(args.input)
            with warnings.catch_warnings(record=True) as caught:  # a target out of reach: a note
                warnings.simplefilter("always", TargetNotReached)
                data = encode(rgb, args.code_size, args.target_bytes, args.lossless, args.max_error)
            for w in caught:
                if issubclass(w.category, TargetNotReached):
                    print(f"note: {w.message}", file=sys.stderr)
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            write_atomic(args.output, data)
            print(f"{args.output}: {len(data)} bytes, {8 * len(data) / (rgb.shape[0] * rgb.shape[1]):.4f} bpp")
        elif args.command == "decode":
            try:
                with open(args.input, "rb") as f:
                    data = f.read()
            except OSError as err:
                raise ValueError(f"cannot read {args.input}: {err.strerror}") from None
            write_atomic(args.output, png_bytes(decode(data)))
        elif args.command == "compare":
            rgb = read(args.input, max_pixels=COMPARE_MAX_PIXELS, limit_note=LIMIT_NOTE)
            names = [n.strip() for n in args.codecs.split(",") if n.strip()]
            print(format_table([r.row() for r in compare(rgb, reference(args), names)]))
    except (ValueError, OSError) as err:
        message = err.strerror + f": {err.filename}" if isinstance(err, OSError) and err.strerror else err
        print(f"error: {message}", file=sys.stderr)
        return 1
    except MemoryError:
        print(f"error: not enough memory to {args.command} {args.input}", file=sys.stderr)
        return 1
    return 0


def read(path: str, **limits):
    """An input image's pixels; its notes (e.g. only the first frame of an animation) on stderr."""
    picture = read_image(path, **limits)
    for note in picture.notes:
        print(f"note: {path}: {note}", file=sys.stderr)
    return picture.rgb


def reference(args):
    """The learned codec at the requested code size, or the target size in bytes to match it to
    (`rate.match_learned` refuses a target under 1 byte)."""
    return learned.by_name(args.code_size) if args.target_bytes is None else args.target_bytes


if __name__ == "__main__":
    sys.exit(main())
