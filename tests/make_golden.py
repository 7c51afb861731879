"""Write this release's golden files for the format version it introduces (docs/release-policy.md).

    python tests/make_golden.py 10

Run once, by the release that introduces a format version: it adds tests/golden/vN/*.cyc and their
entries (with the SHA-256 of the pixels this release decodes them to) to tests/golden/golden.json,
and refuses to touch a version that already has files. The crops come from the shipped examples.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cycleapp  # noqa: E402
from cycleapp.core import checkpoint as ckpts  # noqa: E402
from cycleapp.core import codec  # noqa: E402

GOLDEN = REPO / "tests" / "golden"
# (name, example (or examples joined: "a+b" stacked top to bottom, "a|b" side by side, cut to the
# lower one's height), (top, left, height, width), code size, step shift, enhancement layer)
CASES = {
    9: [
        ("kodim23-96x64-lossless", "kodim23", (200, 300, 64, 96), "huge", 0, (codec.PIXELS, 16)),
        ("kodim04-37x53-within-2", "kodim04", (100, 200, 53, 37), "huge", 0, (codec.PIXELS, 80)),
        ("cid22-70x40-pixel-step-33", "cid22-1025469", (50, 40, 40, 70), "huge", 0, (codec.PIXELS, 528)),
        ("kodim23-96x64-dct-step-3", "kodim23", (200, 300, 64, 96), "huge", 0, (codec.TRANSFORM, 49)),
        ("kodim04-61x45-dct-step-12", "kodim04", (300, 100, 45, 61), "huge", 0, (codec.TRANSFORM, 192)),
        ("cid22-33x17-tiny-coarser-dct-step-2", "cid22-1025469", (120, 200, 17, 33), "tiny", 9, (codec.TRANSFORM, 32)),
        ("kodim23-1x1-lossless", "kodim23", (10, 10, 1, 1), "huge", 0, (codec.PIXELS, 16)),
    ],
    10: [
        ("kodim23-96x64-lossless", "kodim23", (200, 300, 64, 96), "tiny", 127, (codec.PREDICTED, 16)),
        ("kodim04-37x53-within-2", "kodim04", (100, 200, 53, 37), "tiny", 127, (codec.PREDICTED, 80)),
        ("cid22-70x40-step-33", "cid22-1025469", (50, 40, 40, 70), "tiny", 127, (codec.PREDICTED, 528)),
        ("kodim04-160x128-lossless-over-huge", "kodim04", (200, 300, 128, 160), "huge", -16, (codec.PREDICTED, 16)),
        ("cid22-200x150-within-1", "cid22-1025469", (0, 0, 150, 200), "tiny", 127, (codec.PREDICTED, 48)),
        ("kodim23-1x1-lossless", "kodim23", (10, 10, 1, 1), "tiny", 127, (codec.PREDICTED, 16)),
        ("kodim23-3x130-within-1-fractional", "kodim23", (5, 5, 3, 130), "tiny", 127, (codec.PREDICTED, 37)),
        ("kodim23-96x64-dct-step-3", "kodim23", (200, 300, 64, 96), "huge", -16, (codec.PREDICTED_TRANSFORM, 49)),
        ("kodim04-61x45-dct-step-12", "kodim04", (300, 100, 45, 61), "huge", -16, (codec.PREDICTED_TRANSFORM, 192)),
        ("cid22-200x150-dct-step-2", "cid22-1025469", (0, 0, 150, 200), "huge", -16, (codec.PREDICTED_TRANSFORM, 32)),
        ("cid22-33x17-tiny-dct-step-40", "cid22-1025469", (120, 200, 17, 33), "tiny", 9, (codec.PREDICTED_TRANSFORM, 640)),
    ],
    11: [
        ("kodim23-200x150-adaptive-step-3", "kodim23", (150, 250, 150, 200), "large", 0, (codec.ADAPTIVE_TRANSFORM, 49)),
        ("kodim04-61x45-adaptive-step-12", "kodim04", (300, 100, 45, 61), "huge", -16, (codec.ADAPTIVE_TRANSFORM, 192)),
        ("cid22-256x160-adaptive-step-2", "cid22-1025469", (0, 0, 160, 256), "large", 0, (codec.ADAPTIVE_TRANSFORM, 32)),
        ("kodim23-130x70-adaptive-step-20", "kodim23", (300, 400, 70, 130), "large", 0, (codec.ADAPTIVE_TRANSFORM, 320)),
        ("cid22-33x17-tiny-adaptive-step-40", "cid22-1025469", (120, 200, 17, 33), "tiny", 9, (codec.ADAPTIVE_TRANSFORM, 640)),
        ("kodim23-1x1-adaptive-step-2", "kodim23", (10, 10, 1, 1), "large", 0, (codec.ADAPTIVE_TRANSFORM, 32)),
    ],
    12: [  # the predicted pixel layer alone: no code size, no step shift
        ("kodim23-96x64-lossless", "kodim23", (200, 300, 64, 96), None, 0, (codec.PREDICTED_ALONE, 16)),
        ("kodim04-37x53-within-2", "kodim04", (100, 200, 53, 37), None, 0, (codec.PREDICTED_ALONE, 80)),
        ("cid22-200x150-within-1", "cid22-1025469", (0, 0, 150, 200), None, 0, (codec.PREDICTED_ALONE, 48)),
        ("kodim04-160x128-lossless", "kodim04", (200, 300, 128, 160), None, 0, (codec.PREDICTED_ALONE, 16)),
        ("cid22-70x40-within-16", "cid22-1025469", (50, 40, 40, 70), None, 0, (codec.PREDICTED_ALONE, 528)),
        ("kodim23-3x130-within-1-fractional", "kodim23", (5, 5, 3, 130), None, 0, (codec.PREDICTED_ALONE, 37)),
        ("kodim23-1x1-lossless", "kodim23", (10, 10, 1, 1), None, 0, (codec.PREDICTED_ALONE, 16)),
    ],
    13: [  # kind 5's layer over a base made in even tiles; the third is two tiles of 32 and 33 code rows,
         # the fourth two of 64 and 65 code columns
        ("kodim23-200x150-tiled-step-3", "kodim23", (150, 250, 150, 200), "large", 0, (codec.ADAPTIVE_TILED, 49)),
        ("kodim04-61x45-tiled-step-12", "kodim04", (300, 100, 45, 61), "huge", -16, (codec.ADAPTIVE_TILED, 192)),
        ("kodim04-over-cid22-200x1040-tiled-step-40", "kodim04+cid22-1025469", (0, 0, 1040, 200), "tiny", 9,
         (codec.ADAPTIVE_TILED, 640)),
        ("kodim23-thrice-2064x40-tiled-step-40", "kodim23|kodim23|kodim23", (0, 0, 40, 2064), "tiny", 9,
         (codec.ADAPTIVE_TILED, 640)),
        ("kodim23-1x1-tiled-step-2", "kodim23", (10, 10, 1, 1), "large", 0, (codec.ADAPTIVE_TILED, 32)),
    ],
}


def joined(example: str) -> np.ndarray:
    """The example images of a case, joined as its name says ("a+b", "a|b": see CASES)."""
    rows = []
    for row in example.split("+"):
        images = [np.array(Image.open(REPO / "cycleapp" / "examples" / f"{name}.png").convert("RGB"))
                  for name in row.split("|")]
        height = min(image.shape[0] for image in images)
        rows.append(np.concatenate([image[:height] for image in images], axis=1))
    return np.concatenate(rows)


def main(version: int) -> None:
    entries = json.loads((GOLDEN / "golden.json").read_text())
    if any(e["format"] == version for e in entries) or (GOLDEN / f"v{version}").exists():
        raise SystemExit(f"format {version} has golden files already: they are never rewritten")
    (GOLDEN / f"v{version}").mkdir()
    for name, example, (top, left, h, w), size, shift, layer in CASES[version]:
        rgb = np.ascontiguousarray(joined(example)[top:top + h, left:left + w])
        data = codec.encode(size and ckpts.by_name(size), rgb, step_shift=shift, layer=layer)
        assert data[3] == version
        pixels = cycleapp.decode(data)
        (GOLDEN / f"v{version}" / f"{name}.cyc").write_bytes(data)
        entries.append(dict(file=f"v{version}/{name}.cyc", format=version, release=cycleapp.__version__,
                            source=" above ".join(" beside ".join(f"cycleapp/examples/{name}.png" for name in row.split("|"))
                                                  for row in example.split("+"))
                            + f" rows {top}:{top + h} columns {left}:{left + w}",
                            code_size=size, step_shift=shift, layer=list(layer), bytes=len(data),
                            pixels_sha256=hashlib.sha256(pixels.tobytes()).hexdigest(), shape=list(pixels.shape)))
        print(name, len(data))
    (GOLDEN / "golden.json").write_text(json.dumps(entries, indent=1) + "\n")


if __name__ == "__main__":
    main(int(sys.argv[1]))
