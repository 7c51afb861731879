"""What a codec is: the one interface every codec implements, learned or classical.

A codec is an object with a `name` (what tables, plots and `--codecs` call it), a human `label`,
`encode(rgb, setting) -> bytes`, `decode(bytes) -> rgb`, the `settings` it sweeps for a
rate-distortion curve, and, if it can be matched to a byte budget, the `search` range of its
setting. The learned codec's entries are in `core.learned`, the classical codecs' in
`evaluation.registry`; rate control (`core.rate`) and measuring (`evaluation.measure`) read only
this interface.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Search:
    """The range of a setting to search for a file size; a larger setting gives a larger file.

    kind: "integer" (bisection on whole numbers), "continuous" (bisection on reals) or "rate"
    (the setting is a bitrate in bpp, so the size error corrects it directly).
    """
    low: float
    high: float
    kind: str


class Codec:
    """The interface every codec implements (see the module docstring)."""
    name: str
    label: str
    variant: str = ""  # tells apart entries of one name (the learned model's code sizes)
    settings: tuple = ()  # the sweep: one rate-distortion point each
    search: Search | None = None  # None: it cannot be matched to a byte budget

    @property
    def default(self):
        """The setting used when none is given: the middle of the sweep."""
        return self.settings[len(self.settings) // 2]

    def encode(self, rgb: np.ndarray, setting=None) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def describe(self, setting) -> str:
        """The setting as tables and the evaluation JSON show it."""
        raise NotImplementedError


class CodecError(ValueError):
    """A codec cannot encode (or read back) this image: a size its library refuses. Measuring and
    matching report it in the table's `note` instead of failing the whole comparison."""
