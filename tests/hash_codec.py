"""Fingerprint of the codec's output, to prove a refactoring changes no byte: `python tests/hash_codec.py`.

Encodes a fixed set (the three example images and odd crops of one, 1x1 to 37x53, at every shipped
code size and three step shifts), decodes every file, and prints one SHA-256 over all the `.cyc`
bytes and one over all the decoded pixels. A third hash covers the bit counts the training tools
read from the tables (train.calibrate's, train.headroom's and train.diagnose's) on two crops, to
the last bit of their float64 values. Equal hashes before and after a change: same bytes, same
pixels, same counts. A fourth covers the layered codec (format 9), its modes and its rate control
on the crops. Half a minute on two cores.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cycleapp.core import checkpoint  # noqa: E402
from cycleapp.core import codec

EXAMPLES = Path(__file__).resolve().parents[1] / "cycleapp" / "examples"
IMAGES = ("kodim04", "kodim23", "cid22-1025469")
CROPS = ((1, 1), (5, 7), (37, 53))  # (height, width), from kodim23 at (100, 200)
STEP_SHIFTS = (0, -10, 9)


def fixed_set() -> list[tuple[str, np.ndarray]]:
    images = [(name, np.array(Image.open(EXAMPLES / f"{name}.png").convert("RGB"))) for name in IMAGES]
    source = images[1][1]
    return images + [(f"crop{h}x{w}", np.ascontiguousarray(source[100:100 + h, 200:200 + w])) for h, w in CROPS]


def array_bytes(x) -> bytes:
    x = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return str(x.dtype).encode() + str(x.shape).encode() + np.ascontiguousarray(x).tobytes()


def training_counts(ckpt, rgbs: list[np.ndarray], digest) -> None:
    """train.calibrate's, train.headroom's and train.diagnose's bit counts of a few images."""
    from train.calibrate import RealCodes
    from train.diagnose import ideal_bits
    from train.headroom import costs

    codes = RealCodes(ckpt.tables)
    for rgb in rgbs:
        q = codec.quantized_code(ckpt, rgb).to(torch.int64)
        codes.add(q)
        move_bits, dc_bits, ac = ideal_bits(ckpt.tables, q[0])
        digest.update(np.float64([move_bits, dc_bits]).tobytes() + array_bytes(ac.double()))
    digest.update(array_bytes(codes.ac) + array_bytes(codes.dc) + str(codes.symbols).encode())
    for part in costs(ckpt, rgbs, block=4):
        digest.update(array_bytes(part))


def main() -> None:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    files, pixels, counts = hashlib.sha256(), hashlib.sha256(), hashlib.sha256()
    images = fixed_set()
    total = 0
    for path in checkpoint.available():
        ckpt = checkpoint.by_name(path.stem)
        for name, rgb in images:
            for shift in STEP_SHIFTS:
                data = codec.encode(ckpt, rgb, step_shift=shift)
                decoded = codec.decode(data, ckpt)
                files.update(len(data).to_bytes(8, "little") + data)
                pixels.update(array_bytes(decoded))
                total += len(data)
        training_counts(ckpt, [rgb for name, rgb in images if name.startswith("crop")][1:]
                        + [np.ascontiguousarray(images[2][1][:96, :160])], counts)
    print(f"{len(images) * len(STEP_SHIFTS)} encodes per code size, {total} bytes in all")
    print(f"cyc bytes      sha256 {files.hexdigest()}")
    print(f"decoded pixels sha256 {pixels.hexdigest()}")
    print(f"bit counts     sha256 {counts.hexdigest()}")
    print(f"layered        sha256 {layered_hash(images)}")


def layered_hash(images) -> str:
    """The files of the layered codec and its modes (format 9) on the crops, and their pixels."""
    from cycleapp.core import learned
    from cycleapp.core.rate import match_learned

    digest = hashlib.sha256()
    entries = [learned.layered(), learned.mode(learned.LOSSLESS), learned.mode(f"{learned.NEAR_LOSSLESS}2")]
    for name, rgb in images[3:]:
        for entry in entries:
            for setting in entry.settings:
                data = entry.encode(rgb, setting)
                digest.update(len(data).to_bytes(8, "little") + data + array_bytes(entry.decode(data)))
    for target in (60, 300, 1500, 6000):  # rate control, from the presets to lossless
        data = match_learned(images[-1][1], target).data
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


if __name__ == "__main__":
    main()
