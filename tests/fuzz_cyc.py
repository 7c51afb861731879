"""Fuzzing the .cyc decoder with malformed files (not a test; tests/test_fuzz.py and
tests/test_fuzz_layers.py run short versions).

    .venv/bin/python tests/fuzz_cyc.py [--cases 20000] [--seed 0] [--versions 8 9 10 11 12 13]

Mutants of a few real files of every format (8: the learned code alone; 9: with an enhancement
layer of kind 1 or 2; 10: of kind 3 or 4; 11: of kind 5; 12: the predicted pixel layer alone, kind
6, with no learned code; 13: of kind 7): header fields edited (the CRC
recomputed, so the decoder itself must notice), truncations, extensions, random payloads, bit flips,
payload words dropped or added (lengths and CRC fixed), garbage; for the layered formats the same
edits of the layer and its fields, the two payloads swapped, a format 8 header over a layered body
and the other way round, another kind's layer of the same image (sealed as this file's), the other
layered version's header. Every case must raise ValueError
(BitstreamError, or the checkpoint lookup's: what the command line prints as one `error:` line) or
decode to exactly the size its header states, within SECONDS_PER_CASE; a payload or layer that runs
dry or leaves data must be refused as such. Prints a summary line (cases, outcomes, the slowest case,
the process's peak memory), then the outcomes of each kind of mutant.
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
import cycleapp  # noqa: E402
from cycleapp.core import checkpoint  # noqa: E402
from cycleapp.core import codec
from cycleapp.core.bitstream import MAX_SIDE, CycFile, code_shape  # noqa: E402

SECONDS_PER_CASE = 5.0  # a small file decodes in milliseconds; 100 megapixels take a minute
# The layout of each format (docs/format.md), the one place that knows it: the fields of the header
# (name: offset, struct format), and the bytes before the first payload. Formats 9 to 13 (LAYERED)
# are format 8's header followed by the enhancement layer's fields; their payloads are the learned
# code's, then the layer's, the CRC after both. A layer that stands alone (format 12) has an empty
# first payload, and a payload where it may have none is refused ("stands alone").
FIELDS = {"version": (3, "B"), "width": (12, "I"), "height": (16, "I"), "channels": (20, "H"),
          "code height": (22, "H"), "code width": (24, "H"), "step shift": (26, "b"), "length": (27, "I")}
LAYER_FIELDS = {"layer kind": (31, "B"), "layer step": (32, "H"), "layer length": (34, "I")}
HEADER = {8: 31, 9: 38, 10: 38, 11: 38, 12: 38, 13: 38}
LAYERED = {9: (1, 2), 10: (3, 4), 11: (5,), 12: (6,), 13: (7,)}  # the layered versions and the layer kinds each carries
# What a refusal must say for the mutants whose payload (format 8's kinds, which tests/test_fuzz.py
# counts) or layer (format 9's) certainly runs dry or leaves data. A layer cut below two words is
# refused by the container, one too large for its image before it is read: both say how many bytes.
EXPECTED = {"dry": re.compile(r"ran out|cannot hold|a payload of \d+ bytes|stands alone"),
            "leftover": re.compile(r"left after|cannot hold|stands alone")}
LAYER_EXPECTED = {"layer dry": re.compile(r"ran out|an enhancement layer of kind \d+, \d+ bytes"),
                  "layer leftover": re.compile(r"left after|an enhancement layer of \d+ bytes")}
# The kinds of mutant that edit the learned code's payload and the layer, and the edit each makes
# (`edited_stream`).
PAYLOAD_EDITS = {"payload flip": "flip", "payload cut": "cut", "payload add": "add", "random payload": "random",
                 "dry": "dry", "leftover": "leftover"}
LAYER_EDITS = {"layer flip": "flip", "layer cut": "cut", "layer add": "add", "random layer": "random",
               "layer dry": "dry", "layer leftover": "leftover"}
KINDS = ["field", "size", "checkpoint", "truncate", "extend", "flip", *PAYLOAD_EDITS, "garbage"]
LAYER_KINDS = ["layer field", *LAYER_EDITS, "swap", "v8 header, layered body", "layered header, v8 body",
               "foreign layer", "other version"]


def base_files(versions=(8,)) -> list[tuple[bytes, bytes | None, bytes | None]]:
    """Real files, each with (for the layered formats) the format 8 file of the same image,
    checkpoint and step shift, for the mutants that mix the two, and another kind's layer payload
    over the same image and base, sealed as this file's layer ("foreign layer"). Format 8: a few
    small images (1x1 up to 40x72) at the smallest and the largest code size; format 9: lossless and
    near-lossless pixel layers (kind 1), a transform layer (kind 2) at a fine and a coarse step;
    format 10: lossless and near-lossless files as `cycleapp.encode` writes them (kind 3), one large
    enough (160x160, three textures) for the wide neighbourhood and per-tile predictor classes, and
    the predicted transform layer (kind 4) at a fine and a coarse step; format 11: the adaptive
    transform layer (kind 5) at a fine and a coarse step, one large enough for all three sizes;
    format 12: lossless and near-lossless files as `cycleapp.encode` writes them (kind 6, no learned
    code: its twin is the smallest code size's file of the image, its foreign layer kind 4's over the
    flat base), one large enough for the per-tile predictor classes; format 13: kind 5's layer over a
    base made in even tiles (kind 7), one of two tiles."""
    files = []
    if 8 in versions:
        rng = np.random.default_rng(0)
        for name, sizes in (("tiny", [(1, 1), (23, 37), (40, 72)]), ("huge", [(17, 33)])):
            ckpt = checkpoint.by_name(name)
            for h, w in sizes:
                files.append((codec.encode(ckpt, noisy_ramp(h, w, rng)), None, None))
    makers = []
    tiny, huge = checkpoint.by_name("tiny"), checkpoint.by_name("huge")
    if 9 in versions:
        pixels = lambda step: lambda rgb: codec.encode(huge, rgb, step_shift=-16, layer=(codec.PIXELS, step))
        makers.append((9, [((1, 1), noisy_ramp, pixels(16)),
                           ((17, 33), noisy_ramp, pixels(80)),
                           ((40, 72), noisy_ramp, pixels(16)),
                           ((1, 1), noisy_ramp, lambda rgb: codec.encode(tiny, rgb, layer=(codec.TRANSFORM, 96))),
                           ((17, 33), noisy_ramp, lambda rgb: codec.encode(huge, rgb, layer=(codec.TRANSFORM, 32))),
                           ((40, 72), noisy_ramp, lambda rgb: codec.encode(tiny, rgb, layer=(codec.TRANSFORM, 2000)))]))
    if 10 in versions:  # kind 3 as releases 0.10.0 to 0.11.1 wrote it: over the coarsest `tiny` base
        predicted = lambda step: lambda rgb: codec.encode(tiny, rgb, step_shift=127, layer=(codec.PREDICTED, step))
        makers.append((10, [((1, 1), noisy_ramp, predicted(16)),
                            ((17, 33), noisy_ramp, predicted(80)),
                            ((40, 72), noisy_ramp, predicted(16)),
                            ((40, 72), noisy_ramp, predicted(528)),
                            ((160, 160), textures, predicted(16)),
                            ((17, 33), noisy_ramp, lambda rgb: codec.encode(
                                huge, rgb, step_shift=-16, layer=(codec.PREDICTED_TRANSFORM, 32))),
                            ((40, 72), noisy_ramp, lambda rgb: codec.encode(
                                tiny, rgb, layer=(codec.PREDICTED_TRANSFORM, 2000)))]))
    large = checkpoint.by_name("large")

    def adaptive(kind: int, last: tuple) -> list:
        """Kind 5's layer (format 11) or kind 7's (format 13) at a fine and a coarse step, then `last`."""
        return [((17, 33), noisy_ramp, lambda rgb: codec.encode(huge, rgb, step_shift=-16, layer=(kind, 32))),
                ((70, 72), noisy_ramp, lambda rgb: codec.encode(large, rgb, layer=(kind, 2000))), last]
    if 11 in versions:  # the last one large enough for all three transform sizes
        makers.append((11, adaptive(codec.ADAPTIVE_TRANSFORM, ((160, 160), textures, lambda rgb: codec.encode(
            large, rgb, layer=(codec.ADAPTIVE_TRANSFORM, 48))))))
    if 13 in versions:  # the last one two tiles
        makers.append((13, adaptive(codec.ADAPTIVE_TILED, ((1040, 40), noisy_ramp, lambda rgb: codec.encode(
            tiny, rgb, layer=(codec.ADAPTIVE_TILED, 600))))))
    if 12 in versions:
        makers.append((12, [((1, 1), noisy_ramp, lambda rgb: cycleapp.encode(rgb, lossless=True)),
                            ((17, 33), noisy_ramp, lambda rgb: cycleapp.encode(rgb, max_error=2)),
                            ((40, 72), noisy_ramp, lambda rgb: cycleapp.encode(rgb, lossless=True)),
                            ((40, 72), noisy_ramp, lambda rgb: cycleapp.encode(rgb, max_error=16)),
                            ((160, 160), textures, lambda rgb: cycleapp.encode(rgb, lossless=True))]))
    for version, cases in makers:
        rng = np.random.default_rng(version)
        for (h, w), image, make in cases:
            rgb = image(h, w, rng)
            data = make(rgb)
            cyc = CycFile.from_bytes(data)
            if cyc.has_code:
                twin = codec.encode(checkpoint.by_id(cyc.checkpoint_id), rgb, step_shift=cyc.step_shift)
                base = codec.decode(twin)
            else:
                twin, base = codec.encode(tiny, rgb), codec.flat_base(h, w)
            files.append((data, twin, foreign_layer(cyc, rgb, base)))
    return files


def foreign_layer(cyc: CycFile, rgb: np.ndarray, base: np.ndarray) -> bytes:
    """Another kind's layer over this file's image and base pixels (kind 3's for kinds 1, 2 and 4,
    kind 4's for kinds 3, 5, 6 and 7), at a step that kind takes, its coder sealed as this file's
    layer: only the decoder of this file's kind can tell it from the real one."""
    kind = codec.PREDICTED_TRANSFORM if cyc.layer_kind in (codec.PREDICTED, codec.ADAPTIVE_TRANSFORM,
                                                           codec.PREDICTED_ALONE, codec.ADAPTIVE_TILED) else codec.PREDICTED
    layer = codec.LAYERS[kind]
    step = min(max(cyc.layer_step, layer.MIN_STEP), layer.MAX_STEP)
    return layer.encode_layer(rgb, base, step, cyc.layer_seal(base))[0]


def noisy_ramp(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    base = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
    return np.clip(base + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)


def textures(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Vertical stripes, noise and horizontal stripes in three parts of the image, so that one
    predictor per part beats one for all (the predicted pixel layer's per-tile classes)."""
    y, x = np.mgrid[:h, :w]
    img = np.where(y < h // 2, 128 + 100 * np.sin(x / 2.0), 128 + 100 * np.sin(y / 1.5))[..., None] * np.ones(3)
    noisy = (x >= w // 2) & (y < h // 2)
    img[noisy] = rng.normal(128, 40, (noisy.sum(), 3))
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def parts(data: bytes) -> tuple[bytes, bytes, bytes]:
    """A well-formed file's header, payload and layer (b"" in format 8)."""
    header = data[:HEADER[data[3]]]
    (n,) = struct.unpack_from("<I", data, FIELDS["length"][0])
    return header, data[len(header):len(header) + n], data[len(header) + n:-4]


def assemble(header: bytes, payload: bytes, layer: bytes = b"") -> bytes:
    """A file of this header (its format told by the header's size) and payloads, their lengths
    and the CRC fixed; in format 8 a layer is just more bytes after the payload."""
    head = bytearray(header)
    struct.pack_into("<I", head, FIELDS["length"][0], len(payload))
    if len(head) == HEADER[9]:
        struct.pack_into("<I", head, LAYER_FIELDS["layer length"][0], len(layer))
    return with_crc(bytes(head) + payload + layer)


def with_payload(data: bytes, payload: bytes) -> bytes:
    """The file with another learned code's payload, its length field and CRC fixed."""
    header, _, layer = parts(data)
    return assemble(header, payload, layer)


def with_layer(data: bytes, layer: bytes) -> bytes:
    """The format 9 file with another layer, its length field and CRC fixed."""
    header, payload, _ = parts(data)
    return assemble(header, payload, layer)


def with_version(header: bytes, version: int) -> bytes:
    return header[:3] + bytes([version]) + header[4:]


def flipped(data: bytes, rng: np.random.Generator) -> bytes:
    """The data with 1 to 3 distinct bits flipped."""
    out = bytearray(data)
    for i in rng.choice(len(out) * 8, size=rng.integers(1, 4), replace=False):
        out[i // 8] ^= 1 << (i % 8)
    return bytes(out)


def edited_field(data: bytes, offset: int, fmt: str, rng: np.random.Generator, extra=()) -> bytes:
    """The file with one header field set to another value (near the old one, at a limit, random,
    or one of `extra`), the CRC recomputed."""
    old = struct.unpack_from("<" + fmt, data, offset)[0]
    limit = 2 ** (8 * struct.calcsize(fmt) - (fmt == "b"))
    new = int(rng.choice([0, 1, 2, old - 1, old + 1, old * 2, old + 16, limit - 1, rng.integers(limit), *extra]))
    new = min(max(new, -limit if fmt == "b" else 0), limit - 1)
    new = new if new != old else old - 1 if old > 0 else old + 1  # an edit, not the same file
    body = bytearray(data[:-4])
    struct.pack_into("<" + fmt, body, offset, new)
    return with_crc(bytes(body))


def edited_stream(edit: str, stream: bytes, rng: np.random.Generator, unit: int = 1) -> bytes:
    """A payload (the learned code's or the layer's: whole 32-bit words, read from the end) edited:
    bits flipped, bytes cut or inserted (whole words at word boundaries if `unit` is 4: the container
    cannot tell those), random words, the first words dropped ("dry": the last ones the decoder
    reads, so it must run out) or words put before them ("leftover": read after the last symbol, if
    at all)."""
    words = len(stream) // 4
    if not stream:  # (a layer that stands alone: any first payload is one too many)
        return rng.bytes(4 * int(rng.integers(1, 4)))
    if edit == "flip":
        return flipped(stream, rng)
    if edit == "cut":  # from the end, the middle or the start
        n = unit * int(rng.integers(1, len(stream) // unit + 1))
        at = unit * int(rng.integers((len(stream) - n) // unit + 1))
        return stream[:at] + stream[at + n:]
    if edit == "add":  # anywhere
        at = unit * int(rng.integers(len(stream) // unit + 1))
        return stream[:at] + rng.bytes(unit * int(rng.integers(1, 64 // unit))) + stream[at:]
    if edit == "random":
        return rng.bytes(int(rng.choice([0, 4, 8, len(stream), 4 * rng.integers(1, 2 * words + 2)])))
    if edit == "dry":
        return stream[4 * int(rng.integers(1, words + 1)):]
    assert edit == "leftover", edit
    return rng.bytes(int(4 * rng.integers(1, 8))) + stream


def mutant(data: bytes, rng: np.random.Generator, twin: bytes | None = None,
           foreign: bytes | None = None) -> tuple[str, bytes]:
    """One malformed variant of a real file: (kind, bytes), never the file itself. Format 8 files
    get the KINDS, layered files those half the time and the LAYER_KINDS the other half; `twin` and
    `foreign`: for a layered file, the format 8 file of the same image and another kind's layer
    (`base_files`). The kinds of EXPECTED and LAYER_EXPECTED certainly run dry or leave data."""
    version = data[3]
    kind = str(rng.choice(KINDS if version == 8 else (KINDS, LAYER_KINDS)[rng.integers(2)]))
    if kind == "field":  # one of format 8's header fields, the CRC recomputed
        offset, fmt = FIELDS[rng.choice(list(FIELDS))]
        return kind, edited_field(data, offset, fmt, rng)
    if kind == "layer field":  # the layer's kind (1 <-> 2 <-> 3 among the edits), step or length
        name = rng.choice(list(LAYER_FIELDS))
        steps = (15, 16, 17, 31, 32, 33, 4080, 4081, 8192, 8193) if name == "layer step" else ()
        return kind, edited_field(data, *LAYER_FIELDS[name], rng, steps)
    if kind == "size":  # width, height and code shape changed together, the CRC recomputed
        cyc = CycFile.from_bytes(data)
        width, height = (int(rng.choice([1, 15, 16, 17, 100, 10_000, MAX_SIDE, rng.integers(1, 5000)]))
                         for _ in range(2))
        if width * height > 100_000_000:
            height = max(1, 100_000_000 // width)
        if (width, height) == (cyc.width, cyc.height):
            width += 1 if width < MAX_SIDE else -1
        cyc.width, cyc.height = width, height
        if cyc.has_code:  # (a layer alone keeps its empty code shape: its seal must refuse the size)
            cyc.code_shape = code_shape(cyc.code_shape[0], width, height)
        return kind, cyc.to_bytes()
    if kind == "checkpoint":  # another installed checkpoint's id, or an unknown one
        cyc = CycFile.from_bytes(data)
        ids = [checkpoint.by_name(p.stem).id for p in checkpoint.available()] + [rng.bytes(8)]
        if cyc.checkpoint_id in ids:  # (a layer alone names none)
            ids.remove(cyc.checkpoint_id)
        cyc.checkpoint_id = ids[rng.integers(len(ids))]
        return kind, cyc.to_bytes()
    if kind == "truncate":
        return kind, data[:rng.integers(len(data))]
    if kind == "extend":
        return kind, data + rng.bytes(int(rng.integers(1, 64)))
    if kind == "flip":
        return kind, flipped(data, rng)
    header, payload, layer = parts(data)
    if kind in PAYLOAD_EDITS:
        return kind, assemble(header, edited_stream(PAYLOAD_EDITS[kind], payload, rng), layer)
    if kind in LAYER_EDITS:
        unit = int(rng.choice([1, 4]))  # bytes or words
        return kind, assemble(header, payload, edited_stream(LAYER_EDITS[kind], layer, rng, unit))
    if kind == "swap":  # the layer where the learned code's payload belongs, and the other way round
        return kind, assemble(header, layer, payload)
    if kind == "v8 header, layered body":  # the layer dropped, or read as part of the payload, or
        # its fields too (only the version byte changed)
        v8 = with_version(header[:HEADER[8]], 8)
        variant = rng.integers(3)
        if variant == 2:
            return kind, with_crc(with_version(data[:-4], 8))
        return kind, assemble(v8, payload + layer if variant else payload)
    if kind == "layered header, v8 body":  # the format 8 payload of the same image under this
        # header, with this layer or an empty one; or the format 8 file with only its version byte
        # changed to this file's
        twin_payload = parts(twin)[1]
        variant = rng.integers(3)
        if variant == 2:
            return kind, with_crc(with_version(twin[:-4], version))
        return kind, assemble(header, twin_payload, b"" if variant else layer)
    if kind == "foreign layer":  # another kind's layer of the same image, ending in this one's seal
        return kind, assemble(header, payload, foreign)
    if kind == "other version":  # the other layered version, with this layer kind (the container
        # refuses a kind under another version) or one of that version's (the seals bind the version)
        other = int(rng.choice(sorted(set(LAYERED) - {version})))
        head = bytearray(with_version(header, other))
        head[LAYER_FIELDS["layer kind"][0]] = int(rng.choice([*LAYERED[other], header[LAYER_FIELDS["layer kind"][0]]]))
        return kind, assemble(bytes(head), payload, layer)
    assert kind == "garbage", kind
    # random bytes, some of them behind a valid magic number and version
    prefix = rng.choice([b"", b"CYC", b"CYC\x08", b"CYC\x09", b"CYC\x0a", b"CYC\x0b", b"CYC\x0c", b"CYC\x0d"])
    return kind, prefix + rng.bytes(int(rng.integers(0, 200)))


def check(kind: str, data: bytes) -> str:
    """Decode one mutant as the command line does; the outcome ("decoded" or "refused"), or
    AssertionError for anything else."""
    header = data[12:20]
    expected = EXPECTED.get(kind) or LAYER_EXPECTED.get(kind)
    try:
        pixels = codec.decode(data)
    except ValueError as e:  # BitstreamError and the checkpoint lookup's errors
        if expected:
            assert expected.search(str(e)), f"{kind}: refused for another reason: {e}"
        return "refused"
    assert not expected, f"a {kind} payload decoded"
    width, height = struct.unpack("<II", header)
    assert pixels.shape == (height, width, 3) and pixels.dtype == np.uint8, (kind, pixels.shape, (width, height))
    return "decoded"


class Escape(AssertionError):
    """A case outside the contract; `data` holds its bytes, to write out as a reproducer."""

    def __init__(self, message: str, data: bytes):
        super().__init__(message)
        self.data = data


def run(cases: int, seed: int = 0, versions=(8,)) -> dict:
    """Check `cases` mutants of the base files of these formats (format 8 alone unless asked: the
    cases tests/test_fuzz.py counts on); returns the outcomes by kind, the base files' (version,
    layer kind, layer step), the slowest case and the peak memory. Raises Escape for a case outside
    the contract."""
    rng = np.random.default_rng(seed)
    files = base_files(versions)
    outcomes = collections.Counter()
    slowest = 0.0
    for i in range(cases):
        data, twin, foreign = files[i % len(files)]
        kind, data = mutant(data, rng, twin, foreign)
        start = time.perf_counter()
        try:
            outcomes[kind, check(kind, data)] += 1
        except AssertionError as e:
            raise Escape(f"case {i} (seed {seed}): {e}", data) from None
        except Exception as e:
            raise Escape(f"case {i} (seed {seed}, {kind}): {type(e).__name__}: {e}", data) from e
        slowest = max(slowest, time.perf_counter() - start)
        if slowest >= SECONDS_PER_CASE:
            raise Escape(f"case {i} (seed {seed}, {kind}) took {slowest:.1f} s", data)
    return {"outcomes": outcomes, "files": [described(data) for data, _, _ in files], "slowest": slowest,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def described(data: bytes) -> tuple[int, int, int]:
    """A well-formed file's (version, layer kind, layer step); no layer: kind and step 0."""
    if data[3] == 8:
        return 8, 0, 0
    return data[3], *(struct.unpack_from("<" + LAYER_FIELDS[name][1], data, LAYER_FIELDS[name][0])[0]
                for name in ("layer kind", "layer step"))


def summary(result: dict, cases: int, seconds: float) -> str:
    decoded = collections.Counter({kind: n for (kind, outcome), n in result["outcomes"].items()
                                   if outcome == "decoded"})
    which = ", ".join(f"{kind} {n}" for kind, n in decoded.most_common())
    return (f"{cases} malformed .cyc files: {cases - sum(decoded.values())} refused with a clear error, "
            f"{sum(decoded.values())} decoded to their stated size{f' ({which})' if which else ''}, "
            f"0 other outcomes; slowest {1000 * result['slowest']:.0f} ms, {seconds:.0f} s in all, "
            f"peak memory {result['peak_mb']:.0f} MB")


def by_kind(result: dict) -> str:
    """The base files, then one line per kind of mutant: how many were refused and decoded."""
    outcomes = result["outcomes"]
    files = ", ".join(f"format {v}" + (f" (layer kind {k}, step {s})" if k else "") for v, k, s in result["files"])
    lines = [f"  {kind:<24} refused {outcomes[kind, 'refused']:>5}, decoded {outcomes[kind, 'decoded']:>3}"
             for kind in KINDS + LAYER_KINDS if outcomes[kind, "refused"] + outcomes[kind, "decoded"]]
    return "\n".join([f"mutants of {files}:", *lines])


def main() -> None:
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--versions", type=int, nargs="+", choices=(8, 9, 10, 11, 12, 13), default=(8, 9, 10, 11, 12, 13),
                   help="the formats whose files are mutated (default: all)")
    p.add_argument("--save", metavar="PATH", help="where to write the bytes of a case outside the contract")
    args = p.parse_args()
    start = time.perf_counter()
    try:
        result = run(args.cases, args.seed, versions=tuple(args.versions))
    except Escape as e:
        if args.save:
            Path(args.save).write_bytes(e.data)
        raise
    print(summary(result, args.cases, time.perf_counter() - start))
    print(by_kind(result))


if __name__ == "__main__":
    main()
