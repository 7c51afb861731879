"""One image, the cycle model and the classical codecs at the same file size, measured alike."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import codec
from .checkpoint import Checkpoint
from .classical import CODECS, match_size
from .metrics import bpp, ms_ssim, psnr, ssim

COLUMNS = ["codec", "setting", "bytes", "bpp", "psnr", "ssim", "ms_ssim", "encode_ms", "decode_ms", "note"]


@dataclass
class Result:
    codec: str
    setting: str
    data: bytes
    reconstruction: np.ndarray
    encode_ms: float
    decode_ms: float
    note: str = ""

    def row(self, original: np.ndarray) -> dict:
        """The table row: real file bytes and metrics against the original pixels."""
        h, w = original.shape[:2]
        return {"codec": self.codec, "setting": self.setting, "bytes": len(self.data),
                "bpp": bpp(len(self.data), w, h), "psnr": psnr(original, self.reconstruction),
                "ssim": ssim(original, self.reconstruction), "ms_ssim": ms_ssim(original, self.reconstruction),
                "encode_ms": self.encode_ms, "decode_ms": self.decode_ms, "note": self.note}


def timed(fn, *args):
    """fn(*args) and the seconds it took."""
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def run_cycle(ckpt: Checkpoint, rgb: np.ndarray) -> Result:
    data, enc_s = timed(codec.encode, ckpt, rgb)
    rec, dec_s = timed(codec.decode, data, ckpt)
    return Result("cycle", ckpt.name, data, rec, 1000 * enc_s, 1000 * dec_s)


def run_classical(name: str, rgb: np.ndarray, target: int) -> Result:
    """Match the codec to `target` bytes; times are one encode/decode at the chosen setting."""
    c = CODECS[name]
    m = match_size(c, rgb, target)
    data, enc_s = timed(c.encode, rgb, m.setting)
    rec, dec_s = timed(c.decode, data)
    return Result(name, c.describe(m.setting), data, rec, 1000 * enc_s, 1000 * dec_s, m.note)


def compare(rgb: np.ndarray, ckpt: Checkpoint, codecs: list[str]) -> list[Result]:
    unknown = [c for c in codecs if c not in CODECS]
    if unknown:
        raise ValueError(f"unknown codec(s) {', '.join(unknown)} (choose from {', '.join(CODECS)})")
    cycle = run_cycle(ckpt, rgb)
    return [cycle] + [run_classical(name, rgb, len(cycle.data)) for name in codecs]


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
