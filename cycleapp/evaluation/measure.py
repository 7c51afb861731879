"""How we measure: one function, `measure`, for the CLI table, the app, the RD curves and
`train.evaluate`, so no two of them can disagree about a number.

It encodes once (or takes the file a size match already made, with its time) and decodes once, both
timed, and keeps the file and the reconstruction; the quality metrics are computed when first read,
so a curve that needs no SSIM does not pay for it.
A codec that cannot encode the image (`CodecError`: a size its library refuses) gives a
measurement with no file, every number None ('n/a') and the reason in its note.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from cycleapp.core.interface import Codec, CodecError
from cycleapp.core.rate import timed
from cycleapp.evaluation.metrics import Original, bpp, ms_ssim, psnr, ssim

METRICS = ("psnr", "ssim", "ms_ssim")
COLUMNS = ["codec", "setting", "bytes", "bpp", "psnr", "ssim", "ms_ssim", "encode_ms", "decode_ms", "note"]


@dataclass
class Measurement:
    """One codec at one setting on one image: the real file, what decodes from it, and its numbers."""
    entry: Codec
    value: object  # the setting as the codec takes it
    original: np.ndarray = field(repr=False)
    data: bytes = field(repr=False)
    reconstruction: np.ndarray | None = field(repr=False)  # None: the codec could not encode the image
    encode_s: float | None
    decode_s: float | None
    note: str = ""  # why a match to a file size missed its tolerance, or why there is no file

    @property
    def ok(self) -> bool:
        """Whether the codec made a file (and read it back); if not, `note` says why."""
        return self.reconstruction is not None

    @property
    def codec(self) -> str:
        return self.entry.name

    @property
    def setting(self) -> str | None:
        return self.entry.describe(self.value) if self.ok else None

    @property
    def bytes(self) -> int | None:
        return len(self.data) if self.ok else None

    @property
    def bpp(self) -> float | None:
        """The only bitrate we report: 8 x whole file bytes / pixels."""
        return bpp(len(self.data), self.original.shape[1], self.original.shape[0]) if self.ok else None

    @cached_property
    def psnr(self) -> float | None:
        return psnr(self.original, self.reconstruction) if self.ok else None

    @cached_property
    def ssim(self) -> float | None:
        return ssim(self.original, self.reconstruction) if self.ok else None

    @cached_property
    def ms_ssim(self) -> float | None:
        return ms_ssim(self.original, self.reconstruction) if self.ok else None

    @property
    def encode_ms(self) -> float | None:
        return 1000 * self.encode_s if self.ok else None

    @property
    def decode_ms(self) -> float | None:
        return 1000 * self.decode_s if self.ok else None

    def scored(self, original: Original, names=METRICS) -> Measurement:
        """Its quality metrics (`names` of them) computed now rather than when first read, with
        `original`'s statistics (`metrics.Original`), which every file measured against the same
        original shares: the same functions and numbers, less work. A measurement of another copy
        of the image (one kept from an earlier comparison) computes any it lacks on its own."""
        if self.ok:
            for name in names:
                if name in self.__dict__:  # where functools.cached_property keeps a computed value
                    continue
                if original.rgb is self.original:
                    self.__dict__[name] = getattr(original, name)(self.reconstruction)
                else:
                    getattr(self, name)
        return self

    def values(self, keys=COLUMNS) -> dict:
        """The named numbers (and strings) of this measurement."""
        return {k: getattr(self, k) for k in keys}

    def row(self) -> dict:
        """The table row (`COLUMNS`)."""
        return self.values(COLUMNS)


def measure(entry: Codec, rgb: np.ndarray, setting=None, note: str = "",
            encoded: tuple[bytes, float] | None = None, decoded: tuple[np.ndarray, float] | None = None,
            known: dict | None = None) -> Measurement:
    """Encode `rgb` with a codec at a setting (its default if None), decode the bytes, time both;
    a CodecError becomes a measurement without a file, its reason in the note.

    encoded: the file and its encode time when the caller already made it at this setting (a size
    match, `matching.Match.encoded`), so that it is not encoded twice; decoded: that file's pixels
    and decode time, when the caller decoded it too (a quality match), and `known`, metrics the
    caller computed on those very pixels with the same functions ({"psnr": ...}), kept rather than
    computed again."""
    setting = entry.default if setting is None else setting
    try:
        data, encode_s = encoded or timed(entry.encode, rgb, setting)
        reconstruction, decode_s = decoded if encoded and decoded else timed(entry.decode, data)
    except CodecError as e:
        return Measurement(entry, setting, rgb, b"", None, None, None, str(e))
    m = Measurement(entry, setting, rgb, data, reconstruction, encode_s, decode_s, note)
    if encoded and decoded and known:
        m.__dict__.update(known)  # where functools.cached_property keeps a computed value
    return m
