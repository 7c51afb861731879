"""One image, the learned codec and the others at the same file size, measured alike."""
from __future__ import annotations

import numpy as np

from . import codecs as registry
from .checkpoint import Checkpoint
from .codecs import Codec, CodecError, CycleCodec
from .imageio import MAX_PIXELS as ENCODE_MAX_PIXELS, size_problem
from .matching import match_learned, match_size
from .measure import COLUMNS, Measurement, measure

# compare keeps every codec's reconstruction and computes PSNR, SSIM and MS-SSIM on the whole
# image: its peak is about 190 bytes a pixel (MS-SSIM alone 170; measured on 4000x2666), so about
# 3.4 GB at this limit, where `encode` takes up to imageio.MAX_PIXELS.
MAX_PIXELS = 16_000_000
LIMIT_NOTE = f" for compare (encode takes up to {ENCODE_MAX_PIXELS:,})"


def compare(rgb: np.ndarray, reference: Codec | Checkpoint | int, codecs: list[str]) -> list[Measurement]:
    """The reference codec at its default setting, then each named codec matched to its file size.

    `reference` is a registry entry (e.g. `codecs.learned("medium")`); a Checkpoint stands for the
    learned codec at that code size, and an int for the learned codec matched to that many bytes.
    Results carry the files and reconstructions: a view of the learned code reads
    `results[0].entry.code(results[0].data)`, with no second encode. A codec that cannot encode
    this image (a size its library refuses) has a result without a file (`ok` False), its reason
    in the note; ValueError for an image over MAX_PIXELS.
    """
    registry.check(codecs, registry.matchable())
    problem = size_problem(rgb.shape[1], rgb.shape[0], MAX_PIXELS, limit_note=LIMIT_NOTE)
    if problem:
        raise ValueError(problem)
    if isinstance(reference, Checkpoint):
        reference = CycleCodec(reference)
    if isinstance(reference, int):
        m = match_learned(rgb, reference)
        first = measure(registry.learned(m.variant), rgb, m.setting, m.note, m.encoded)
    else:
        first = measure(reference, rgb)
    if not first.ok:
        raise CodecError(f"{first.entry.label} {first.note}")
    results = [first]
    for name in codecs:
        entry = registry.get(name)
        m = match_size(entry, rgb, len(first.data))
        results.append(measure(entry, rgb, m.setting, m.note, m.encoded))
    return results


def format_table(rows: list[dict]) -> str:
    """A plain-text table, 'n/a' where a metric does not apply."""
    def cell(key, value):
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return {"bpp": f"{value:.4f}", "psnr": f"{value:.2f}", "ssim": f"{value:.4f}",
                    "ms_ssim": f"{value:.4f}"}.get(key, f"{value:.1f}")
        return str(value)
    table = [COLUMNS] + [[cell(k, r[k]) for k in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in table)
