"""The learned codec as codec objects (`core.interface.Codec`): one entry per code size
(`CycleCodec`, all named `LEARNED`, told apart by `variant`), the layered codec above them
(`LayeredCodec`: a code size with an enhancement layer, up to lossless),
and its modes (lossless, near-lossless). `by_name` turns any of the names the CLI, the API and the
app accept into its entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from cycleapp.core import checkpoint as ckpts
from cycleapp.core import adaptive_layer, codec, residual
from cycleapp.core.bitstream import CycFile, code_shape
from cycleapp.core.checkpoint import Checkpoint
from cycleapp.core.interface import Codec, Search

LEARNED = "cycle"  # the name of the learned codec's entries: the codec this project is about
DEFAULT_RDOQ_WEIGHT = codec.RDOQ_WEIGHT
# Above the largest code size's own file, rate control makes its steps at most FINEST finer (two grid
# steps), then the layered codec takes over: much finer, the symbols would run past the coding
# tables' range and the image fall apart (kodim23: 26.9 dB at 2 bpp).
FINEST = 16
# The layered codec's base: the second largest code size as trained. Above the code sizes the layer
# carries most of the file, and a smaller base pays for fewer of its bits: on 8 training photos
# (0.75 to 4 bpp, against the largest code size at FINEST) it gained 0.22 dB from 0.75 to 1.5 bpp and
# 0.34 dB from 1.5 to 4, as much as any other base tried and never 0.01 dB worse on a photo (which
# the middle code size was, by 0.13 dB).
LAYERED_BASE_SHIFT = 0
# That base is not the better one on every photo just beyond the largest code size's finest file (on
# 2 of those 8 photos up to 1.4 times its bytes). So there rate control also tries the bridge, the
# layered codec over that finest file, whose smallest file is that file (so a larger target never
# gives a worse image), and keeps the better (`rate.match_learned`, `rate.BRIDGE_BELOW`).
BRIDGE_SHIFT = -FINEST
# Near-lossless and lossless files hold the predicted pixel layer alone, with no learned code beneath
# it (`codec.PREDICTED_ALONE`): that layer predicts the image from itself, and a learned base did not
# pay for its bits (over the smallest code size at its coarsest steps, about 0.01 bpp, files were 0.1
# to 1.3 % larger on average: CHANGELOG 0.12.0) while its transform took a third of the time.


@dataclass(frozen=True)
class CycleCodec(Codec):
    """The learned codec at one code size (one checkpoint).

    Its setting is a step offset, in eighths of the coding tables' grid ratio: 0 is the code size
    as trained, +8 steps GRID_RATIO times finer (a larger file), -8 as much coarser; it is stored
    in the file, so any size between and beyond the code sizes can be reached (`search`).
    """
    checkpoint: Checkpoint = field(repr=False)
    rdoq_weight: float = DEFAULT_RDOQ_WEIGHT
    name = LEARNED
    label = "CycleCodec"
    settings = (0,)
    search: Search = Search(-codec.STEP_SHIFT_RANGE[1], -codec.STEP_SHIFT_RANGE[0], "integer")

    @property
    def variant(self) -> str:
        return self.checkpoint.name

    def encode(self, rgb: np.ndarray, setting=None) -> bytes:
        return codec.encode(self.checkpoint, rgb, self.rdoq_weight, -int(setting or 0))

    def decode(self, data: bytes) -> np.ndarray:
        return codec.decode(data, self.checkpoint)

    def describe(self, setting) -> str:
        if not setting:
            return self.variant
        factor = float(codec.step_scales(self.checkpoint, -int(setting))[1])
        return f"{self.variant}, steps x{factor:.3g}"

    def code(self, data: bytes) -> np.ndarray:
        """The integer code (C, H/16, W/16) stored in a .cyc file: entropy decoding only, so a view
        of the code needs no second encode."""
        return codec.read_code(data, self.checkpoint)[2]


LAYERED = "layered"  # the variant of the learned codec that adds an enhancement layer
BRIDGE = "layered-bridge"  # the same over the largest code size's finest file (`BRIDGE_SHIFT`)
# The layered codec's settings, smallest file first: the transform-domain layer (`adaptive_layer`)
# at steps from 512 down to 2, 16 settings an octave, then lossless (the predicted pixel layer at a step
# of 1, on its own base). Each is a larger file and a better image than the one before (the lossless
# file was 1.7 to 2.7 bpp above the step-2 one on the photos tried). The pixel layer's lossy steps
# are modes of their own (`mode`: near-lossless), not rungs.
TRANSFORM_STEPS = tuple(round(codec.dct_layer.MAX_STEP * 2 ** (-i / 16))
                        for i in range(16 * 8 + 1))  # in sixteenths: 512 to 2
PIXEL_STEPS = (residual.STEP_UNIT,)
LADDER = len(TRANSFORM_STEPS) + len(PIXEL_STEPS) - 1  # the lossless setting
# The layer kinds the ladder and the modes write (from release 0.12.0 on): format 13's transform-domain
# layer over a base made in even tiles, format 12's predicted pixel layer on its own. Files of the
# earlier kinds are still read (`codec.LAYERS`), and written only where a caller names their kind.
TRANSFORM_LAYER, PIXEL_LAYER = codec.ADAPTIVE_TILED, codec.PREDICTED_ALONE


def ladder_layer(setting: int) -> tuple[int, int]:
    """The enhancement layer (kind, step) of a layered setting, 0 to LADDER (lossless)."""
    setting = min(max(int(setting), 0), LADDER)
    if setting < len(TRANSFORM_STEPS):
        return TRANSFORM_LAYER, TRANSFORM_STEPS[setting]
    return PIXEL_LAYER, PIXEL_STEPS[setting - len(TRANSFORM_STEPS)]


DEFAULT_CODE_SIZE = "medium"  # the API's, the plug-in's and the app's code size when none is chosen
LOSSLESS = "lossless"  # the learned codec's mode whose files decode to the very same pixels
NEAR_LOSSLESS = "within-"  # "within-N": every pixel of every channel within N (1 to 16) of the image's
NEAR_LOSSLESS_RANGE = (1, 16)


@dataclass(frozen=True)
class ImageBase:
    """One image's base layer, made once for every setting rate control tries on it: the learned
    code's payload and the pixels it decodes to, and the transform-domain layer's encoder over
    them (`adaptive_layer.Encoder`: what every step shares)."""
    rgb: np.ndarray
    payload: bytes
    pixels: np.ndarray
    transform_layer: adaptive_layer.Encoder


@dataclass(frozen=True)
class LayeredCodec(Codec):
    """The learned codec beyond its presets: a code size at a step offset (its base) plus an
    enhancement layer (`codec.LAYERS`), from the base's own file up to lossless.

    The setting picks the layer and its step on a ladder (`ladder_layer`). A mode (`mode`:
    lossless, near-lossless) is this codec with one fixed layer (`PIXEL_LAYER`, which stands alone:
    no checkpoint): its only setting, never matched to a size. `base`, if given, is one image's
    `ImageBase`, reused by every setting tried on it."""
    checkpoint: Checkpoint | None = field(repr=False)
    step_shift: int = LAYERED_BASE_SHIFT  # the base's, `codec.encode`'s
    fixed: tuple[int, int] | None = None  # a mode's one layer (kind, step); None: the ladder
    variant: str = LAYERED
    base: ImageBase | None = field(default=None, repr=False, compare=False)
    name = LEARNED
    label = "CycleCodec"

    @property
    def settings(self) -> tuple:
        return (0,) if self.fixed else (60, 84, 100, 114, LADDER - 1)  # a curve from about 0.5 bpp to 52 dB

    @property
    def search(self) -> Search | None:
        return None if self.fixed else Search(0, LADDER, "integer")

    def layer(self, setting) -> tuple[int, int]:
        return self.fixed or ladder_layer(setting)

    def for_image(self, rgb: np.ndarray) -> "LayeredCodec":
        """The same codec with the base layer of this image made once."""
        payload, pixels = codec.layered_base(self.checkpoint, rgb, TRANSFORM_LAYER, step_shift=self.step_shift)
        return replace(self, base=ImageBase(rgb, payload, pixels, adaptive_layer.Encoder(rgb, pixels)))

    def encode(self, rgb: np.ndarray, setting=None) -> bytes:
        setting = self.default if setting is None else int(setting)
        kind, step = self.layer(setting)
        if kind == PIXEL_LAYER:
            return codec.encode(None, rgb, layer=(kind, step))
        if self.base is None or self.base.rgb is not rgb:
            return codec.encode(self.checkpoint, rgb, step_shift=self.step_shift, layer=(kind, step))
        return codec.encode_layers(self.checkpoint, rgb, step_shift=self.step_shift, layer=(kind, step),
                                   base=(self.base.payload, self.base.pixels),
                                   layer_encoder=self.base.transform_layer)[0]

    def pixels_at(self, setting: int) -> np.ndarray:
        """The pixels this image's file (`for_image`) at a transform-domain setting decodes to, as
        its encoder makes them, without decoding: rate control compares its candidates' errors, and
        only where there are several (a reconstruction is a tenth of an encode's time)."""
        kind, step = self.layer(setting)
        assert kind == TRANSFORM_LAYER, "pixels_at is for the transform-domain settings"
        return self.base.transform_layer.pixels_at(step)

    def base_bytes(self) -> int:
        """The bytes of a file of this image's base (`for_image`) and an empty layer: every layered
        file's size is this plus its layer's payload."""
        h, w = self.base.rgb.shape[:2]
        return len(CycFile(self.checkpoint.id, w, h, code_shape(self.checkpoint.channels, w, h), self.base.payload,
                           self.step_shift, TRANSFORM_LAYER, TRANSFORM_STEPS[0]).to_bytes())

    def estimate(self, setting: int) -> float:
        """A transform-domain setting's file size without coding its layer (`Encoder.size`):
        rate control searches on it and codes only the setting it picks."""
        return self.base_bytes() + self.base.transform_layer.size(self.layer(setting)[1])

    def decode(self, data: bytes) -> np.ndarray:
        return codec.decode(data)  # (its base's checkpoint depends on the layer: found by its id)

    def describe(self, setting) -> str:
        kind, step = self.layer(setting)
        if kind == PIXEL_LAYER:
            return "lossless" if step == residual.STEP_UNIT else \
                f"near-lossless, every error within {residual.max_error(step)}"
        return f"{self.checkpoint.name} + DCT layer, step {step / residual.STEP_UNIT:.3g}"


def mode(name: str) -> LayeredCodec | None:
    """The learned codec's mode of this name (`LOSSLESS`, or `NEAR_LOSSLESS` + N), or None if the name
    is not one; ValueError for a near-lossless N out of range."""
    if name == LOSSLESS:
        step = residual.STEP_UNIT
    elif name.startswith(NEAR_LOSSLESS) and name[len(NEAR_LOSSLESS):].isdigit():
        n = int(name[len(NEAR_LOSSLESS):])
        lo, hi = NEAR_LOSSLESS_RANGE
        if not lo <= n <= hi:
            raise ValueError(f"near-lossless N must be from {lo} to {hi}, not {n}")
        step = residual.near_lossless_step(n)
    else:
        return None
    return LayeredCodec(None, fixed=(PIXEL_LAYER, step), variant=name)


def mode_names() -> list[str]:
    """The modes the app offers beside the code sizes."""
    return [LOSSLESS, *(f"{NEAR_LOSSLESS}{n}" for n in (1, 2, 4))]


def by_name(code_size: str, rdoq_weight: float = DEFAULT_RDOQ_WEIGHT) -> Codec:
    """The learned codec at a code size, `LAYERED` (with an enhancement layer), `BRIDGE` or a mode
    (`mode`: lossless, near-lossless); ValueError naming the installed sizes if unknown."""
    if code_size == LAYERED:
        return layered()
    if code_size == BRIDGE:
        return bridge()
    if (entry := mode(code_size)) is not None:
        return entry
    return CycleCodec(ckpts.by_name(code_size), rdoq_weight)


def presets(rdoq_weight: float = DEFAULT_RDOQ_WEIGHT) -> list[CycleCodec]:
    """The learned codec at each installed code size, smallest first."""
    return [CycleCodec(ckpts.by_name(p.stem), rdoq_weight) for p in ckpts.available()]


def layered() -> LayeredCodec:
    """The layered codec: the second largest code size (the only one if there is one) as trained,
    with an enhancement layer (see `LAYERED_BASE_SHIFT`)."""
    return LayeredCodec(_installed(-2))


def bridge() -> LayeredCodec:
    """The layered codec over the largest code size's finest file (see `BRIDGE_SHIFT`)."""
    return LayeredCodec(_installed(-1), step_shift=BRIDGE_SHIFT, variant=BRIDGE)


def _installed(index: int) -> Checkpoint:
    """The installed code size at this index, smallest first (clamped: with one size, that one);
    ValueError if none is installed."""
    paths = ckpts.available()
    if not paths:
        raise ValueError(f"no checkpoints found in {ckpts.checkpoint_dir()}")
    return ckpts.by_name(paths[min(max(index, -len(paths)), len(paths) - 1)].stem)
