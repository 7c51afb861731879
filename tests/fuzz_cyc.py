"""Fuzzing the .cyc decoder with malformed files (not a test; tests/test_fuzz.py runs a short version).

    .venv/bin/python tests/fuzz_cyc.py [--cases 20000] [--seed 0]

Mutants of a few real files: header fields edited (the CRC recomputed, so the decoder itself must
notice), truncations, extensions, random payloads, bit flips, payload words dropped or added
(length and CRC fixed), garbage. Every case must raise ValueError (BitstreamError, or the checkpoint
lookup's: what the command line prints as one `error:` line) or decode to exactly the size its header
states, within SECONDS_PER_CASE; a payload that runs dry or leaves data must be refused as such.
Prints one summary line: cases, outcomes, the slowest case, the process's peak memory.
"""
from __future__ import annotations

import argparse
import collections
import re
import resource
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cycleapp import checkpoint, codec  # noqa: E402
from cycleapp.bitstream import MAX_SIDE, CycFile, code_shape  # noqa: E402

SECONDS_PER_CASE = 5.0  # a small file decodes in milliseconds; 100 megapixels take a minute
HEADER = 31  # bytes before the payload
FIELDS = {"version": (3, "B"), "width": (12, "I"), "height": (16, "I"), "channels": (20, "H"),
          "code height": (22, "H"), "code width": (24, "H"), "step shift": (26, "b"), "length": (27, "I")}
# What a refusal must say for the mutants whose payload certainly runs dry or leaves data.
EXPECTED = {"dry": re.compile(r"ran out|cannot hold|a payload of \d+ bytes"),
            "leftover": re.compile(r"left after|cannot hold")}


def base_files() -> list[bytes]:
    """Real files: a few small images (1x1 up to 40x72) at the smallest and the largest code size."""
    rng = np.random.default_rng(0)
    files = []
    for name, sizes in (("tiny", [(1, 1), (23, 37), (40, 72)]), ("huge", [(17, 33)])):
        ckpt = checkpoint.by_name(name)
        for h, w in sizes:
            base = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
            rgb = np.clip(base + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
            files.append(codec.encode(ckpt, rgb))
    return files


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def with_payload(data: bytes, payload: bytes) -> bytes:
    """The file with another payload, its length field and CRC fixed."""
    return with_crc(data[:HEADER - 4] + struct.pack("<I", len(payload)) + payload)


def flipped(data: bytes, rng: np.random.Generator) -> bytes:
    """The data with 1 to 3 distinct bits flipped."""
    out = bytearray(data)
    for i in rng.choice(len(out) * 8, size=rng.integers(1, 4), replace=False):
        out[i // 8] ^= 1 << (i % 8)
    return bytes(out)


def mutant(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    """One malformed variant of a real file: (kind, bytes), never the file itself. Kinds "dry" and
    "leftover" are payloads that certainly run out before the last symbol or leave words after it."""
    payload = data[HEADER:-4]
    words = len(payload) // 4
    r = lambda n: rng.bytes(int(n))  # noqa: E731
    kind = str(rng.choice(["field", "size", "checkpoint", "truncate", "extend", "flip", "payload flip",
                           "payload cut", "payload add", "random payload", "dry", "leftover", "garbage"]))
    if kind == "field":  # one header field, the CRC recomputed
        name = rng.choice(list(FIELDS))
        offset, fmt = FIELDS[name]
        old = struct.unpack_from("<" + fmt, data, offset)[0]
        limit = 2 ** (8 * struct.calcsize(fmt) - (fmt == "b"))
        new = int(rng.choice([0, 1, 2, old - 1, old + 1, old * 2, old + 16, limit - 1, rng.integers(limit)]))
        new = min(max(new, -limit if fmt == "b" else 0), limit - 1)
        new = new if new != old else old - 1 if old > 0 else old + 1  # an edit, not the same file
        body = bytearray(data[:-4])
        struct.pack_into("<" + fmt, body, offset, new)
        return kind, with_crc(bytes(body))
    if kind == "size":  # width, height and code shape changed together, the CRC recomputed
        cyc = CycFile.from_bytes(data)
        width, height = (int(rng.choice([1, 15, 16, 17, 100, 10_000, MAX_SIDE, rng.integers(1, 5000)]))
                         for _ in range(2))
        if width * height > 100_000_000:
            height = max(1, 100_000_000 // width)
        if (width, height) == (cyc.width, cyc.height):
            width += 1 if width < MAX_SIDE else -1
        cyc.width, cyc.height = width, height
        cyc.code_shape = code_shape(cyc.code_shape[0], width, height)
        return kind, cyc.to_bytes()
    if kind == "checkpoint":  # another installed checkpoint's id, or an unknown one
        cyc = CycFile.from_bytes(data)
        ids = [checkpoint.by_name(p.stem).id for p in checkpoint.available()] + [r(8)]
        ids.remove(cyc.checkpoint_id)
        cyc.checkpoint_id = ids[rng.integers(len(ids))]
        return kind, cyc.to_bytes()
    if kind == "truncate":
        return kind, data[:rng.integers(len(data))]
    if kind == "extend":
        return kind, data + r(rng.integers(1, 64))
    if kind == "flip":
        return kind, flipped(data, rng)
    if kind == "payload flip":
        return kind, with_payload(data, flipped(payload, rng))
    if kind == "payload cut":  # bytes cut from the end, the middle or the start
        n = int(rng.integers(1, len(payload) + 1))
        at = int(rng.integers(len(payload) - n + 1))
        return kind, with_payload(data, payload[:at] + payload[at + n:])
    if kind == "payload add":  # bytes inserted anywhere
        at = int(rng.integers(len(payload) + 1))
        return kind, with_payload(data, payload[:at] + r(rng.integers(1, 64)) + payload[at:])
    if kind == "random payload":
        n = int(rng.choice([0, 4, 8, len(payload), 4 * rng.integers(1, 2 * words + 2)]))
        return kind, with_payload(data, r(n))
    if kind == "dry":  # the first words (the last the decoder reads) dropped: it must run out
        return kind, with_payload(data, payload[4 * int(rng.integers(1, words + 1)):])
    if kind == "leftover":  # words before the first one (read after the last symbol): data left over
        return kind, with_payload(data, r(4 * rng.integers(1, 8)) + payload)
    # garbage: random bytes, some of them behind a valid magic number and version
    prefix = rng.choice([b"", b"CYC", b"CYC\x03", b"CYC\x02"])
    return kind, prefix + r(rng.integers(0, 200))


def check(kind: str, data: bytes) -> str:
    """Decode one mutant as the command line does; the outcome ("decoded" or "refused"), or
    AssertionError for anything else."""
    header = data[12:20]
    try:
        pixels = codec.decode(data)
    except ValueError as e:  # BitstreamError and the checkpoint lookup's errors
        if kind in EXPECTED:
            assert EXPECTED[kind].search(str(e)), f"{kind}: refused for another reason: {e}"
        return "refused"
    assert kind not in EXPECTED, f"a {kind} payload decoded"
    width, height = struct.unpack("<II", header)
    assert pixels.shape == (height, width, 3) and pixels.dtype == np.uint8, (kind, pixels.shape, (width, height))
    return "decoded"


def run(cases: int, seed: int = 0) -> dict:
    """Check `cases` mutants; returns the outcomes by kind, the slowest case and the peak memory."""
    rng = np.random.default_rng(seed)
    files = base_files()
    outcomes = collections.Counter()
    slowest = 0.0
    for i in range(cases):
        kind, data = mutant(files[i % len(files)], rng)
        start = time.perf_counter()
        try:
            outcomes[kind, check(kind, data)] += 1
        except AssertionError as e:
            raise AssertionError(f"case {i} (seed {seed}): {e}") from None
        except Exception as e:
            raise AssertionError(f"case {i} (seed {seed}, {kind}): {type(e).__name__}: {e}") from e
        slowest = max(slowest, time.perf_counter() - start)
        assert slowest < SECONDS_PER_CASE, f"case {i} (seed {seed}, {kind}) took {slowest:.1f} s"
    return {"outcomes": outcomes, "slowest": slowest,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def summary(result: dict, cases: int, seconds: float) -> str:
    decoded = collections.Counter({kind: n for (kind, outcome), n in result["outcomes"].items()
                                   if outcome == "decoded"})
    which = ", ".join(f"{kind} {n}" for kind, n in decoded.most_common())
    return (f"{cases} malformed .cyc files: {cases - sum(decoded.values())} refused with a clear error, "
            f"{sum(decoded.values())} decoded to their stated size{f' ({which})' if which else ''}, "
            f"0 other outcomes; slowest {1000 * result['slowest']:.0f} ms, {seconds:.0f} s in all, "
            f"peak memory {result['peak_mb']:.0f} MB")


def main() -> None:
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    start = time.perf_counter()
    result = run(args.cases, args.seed)
    print(summary(result, args.cases, time.perf_counter() - start))


if __name__ == "__main__":
    main()
