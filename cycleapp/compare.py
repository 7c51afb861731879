"""One image, the learned codec and the others at the same file size, measured alike."""
from __future__ import annotations

import numpy as np

from . import codecs as registry
from .checkpoint import Checkpoint
from .codecs import Codec, CycleCodec
from .matching import match_learned, match_size
from .measure import COLUMNS, Measurement, measure


def compare(rgb: np.ndarray, reference: Codec | Checkpoint | int, codecs: list[str]) -> list[Measurement]:
    """The reference codec at its default setting, then each named codec matched to its file size.

    `reference` is a registry entry (e.g. `codecs.learned("medium")`); a Checkpoint stands for the
    learned codec at that code size, and an int for the learned codec matched to that many bytes.
    Results carry the files and reconstructions: a view of the learned code reads
    `results[0].entry.code(results[0].data)`, with no second encode.
    """
    registry.check(codecs, registry.matchable())
    if isinstance(reference, Checkpoint):
        reference = CycleCodec(reference)
    if isinstance(reference, int):
        m = match_learned(rgb, reference)
        first = measure(registry.learned(m.variant), rgb, m.setting, m.note)
    else:
        first = measure(reference, rgb)
    results = [first]
    for name in codecs:
        entry = registry.get(name)
        m = match_size(entry, rgb, len(first.data))
        results.append(measure(entry, rgb, m.setting, m.note))  # timed at the chosen setting
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
