"""What a codec is, and the registry of every codec the project knows.

A codec is an object with a `name` (what tables, plots and `--codecs` call it), a human `label`,
`encode(rgb, setting) -> bytes`, `decode(bytes) -> rgb`, the `settings` it sweeps for a
rate-distortion curve, and, if it can be matched to a byte budget, the `search` range of its
setting. The learned model is one entry per code size (all named `LEARNED`, told apart by
`variant`); each classical codec is one `PillowCodec` entry in `CLASSICAL`.

Adding a codec is one entry in `CLASSICAL`: the CLI, the app, the plots and the evaluation read
their choices, defaults and labels from here. This module is the only place where the learned
codec is told apart from the others by its name.
"""
from __future__ import annotations

import io
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
from PIL import Image, ImageFile

from . import checkpoint as ckpts
from . import codec, residual
from . import imageio  # noqa: F401  (registers the HEIF and JPEG XL plug-ins)
from .checkpoint import Checkpoint

LEARNED = "cycle"  # the name of the learned codec's entries: the codec this project is about
DEFAULT_RDOQ_WEIGHT = codec.RDOQ_WEIGHT
# Above the largest code size's own file, rate control makes its steps at most FINEST finer (two grid
# steps), then the layered codec takes over: much finer, the symbols would run past the coding
# tables' range and the image fall apart (kodim23: 26.9 dB at 2 bpp).
FINEST = 16
# The layered codec's base: the largest code size at that finest offset, so that its smallest file
# (the base and a layer of zeros) is as good as the best file of the code sizes alone, and a larger
# target never gives a worse image across the switch from one to the other.
BASE_SHIFT = -FINEST


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


_buffer_lock = threading.Lock()


@contextmanager
def _output_buffer(nbytes: int):
    """Let Pillow's encoders write up to `nbytes` in one piece. With optimised Huffman tables,
    libjpeg must write the whole file at once (it cannot suspend), and Pillow sizes that buffer
    by the image's own pixels, too small for a narrow image padded to 16x16 blocks: libjpeg then
    prints 'Suspension not allowed here' and fails."""
    with _buffer_lock:
        old = ImageFile.MAXBLOCK
        ImageFile.MAXBLOCK = max(old, nbytes)
        try:
            yield
        finally:
            ImageFile.MAXBLOCK = old


def _last_clause(error: Exception) -> str:
    """The specific part of a library's message ('Error during encoding ...: Initialization
    problem: x265 encoder could not be opened ...' -> 'x265 encoder could not be opened ...')."""
    return str(error).rsplit(": ", 1)[-1] or type(error).__name__


@dataclass(frozen=True)
class PillowCodec(Codec):
    """A classical codec written and read by Pillow: `options(setting)` are its save() options.

    `max_side`: the largest width or height its library writes and reads back (0: no limit under
    ours); larger images are refused up front, as the libraries would print to stderr or fail
    obscurely. Any other failure of the library is a CodecError giving the size and the reason."""
    name: str
    label: str
    format: str
    options: Callable[[float], dict] = field(repr=False)
    setting_name: str
    search: Search
    settings: tuple  # settings that cover roughly 0.02 to 2 bpp on photographs
    max_side: int = 0

    def encode(self, rgb: np.ndarray, setting=None) -> bytes:
        h, w = rgb.shape[:2]
        if self.max_side and max(w, h) > self.max_side:
            raise CodecError(f"cannot encode a {w}x{h} image (width and height at most {self.max_side:,})")
        buf = io.BytesIO()
        options = self.options(self.default if setting is None else setting)
        # JPEG: 3 bytes per pixel of the image padded to 16x16 blocks, twice what libjpeg writes
        # for noise at quality 100.
        buffer = _output_buffer(3 * (16 * -(-w // 16)) * (16 * -(-h // 16)) + 65536) \
            if self.format == "JPEG" else nullcontext()
        try:
            with buffer:
                Image.fromarray(rgb, "RGB").save(buf, format=self.format, **options)
        except (OSError, ValueError, RuntimeError, EOFError) as e:
            raise CodecError(f"cannot encode a {w}x{h} image ({_last_clause(e)})") from None
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(data)) as img:
                return np.array(img.convert("RGB"), dtype=np.uint8)
        except (OSError, ValueError, RuntimeError, EOFError) as e:
            raise CodecError(f"cannot read back its own file ({_last_clause(e)})") from None

    def describe(self, setting) -> str:
        # A real-valued setting found by bisection: four significant digits, no 5.901e-06.
        return f"{self.setting_name} {setting:g}" if self.search.kind == "integer" \
            else f"{self.setting_name} {round(float(f'{setting:.4g}'), 4):g}"


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
# The layered codec's settings, smallest file first: the transform-domain layer (`dct_layer`) at
# steps from 512 down to 2, 16 settings an octave, then lossless (the pixel-domain layer at a step of
# 1). Each is a larger file and a better image than the one before. The pixel-domain layer's lossy
# steps (3 and 2: every error within 1) are modes of their own (`mode`), not rungs: on a smooth photo
# the transform-domain layer at a step of 3 is already better than they are (CLIC: 51.6 dB at 1.8 bpp
# against 51.4 dB at 2.4 bpp).
TRANSFORM_STEPS = tuple(round(codec.dct_layer.MAX_STEP * 2 ** (-i / 16))
                        for i in range(16 * 8 + 1))  # in sixteenths: 512 to 2
PIXEL_STEPS = (residual.STEP_UNIT,)
LADDER = len(TRANSFORM_STEPS) + len(PIXEL_STEPS) - 1  # the lossless setting


def ladder_layer(setting: int) -> tuple[int, int]:
    """The enhancement layer (kind, step) of a layered setting, 0 to LADDER (lossless)."""
    setting = min(max(int(setting), 0), LADDER)
    if setting < len(TRANSFORM_STEPS):
        return codec.TRANSFORM, TRANSFORM_STEPS[setting]
    return codec.PIXELS, PIXEL_STEPS[setting - len(TRANSFORM_STEPS)]


DEFAULT_CODE_SIZE = "medium"  # the API's, the plug-in's and the app's code size when none is chosen
LOSSLESS = "lossless"  # the learned codec's mode whose files decode to the very same pixels
NEAR_LOSSLESS = "within-"  # "within-N": every pixel of every channel within N (1 to 16) of the image's
NEAR_LOSSLESS_RANGE = (1, 16)


@dataclass(frozen=True)
class LayeredCodec(Codec):
    """The learned codec beyond its presets: the largest code size plus an enhancement layer
    (`codec.LAYERS`), from that code size's own file up to lossless.

    The setting picks the layer and its step on a ladder (`ladder_layer`). A mode (`mode_name`:
    lossless, near-lossless) is this codec with one fixed layer: its only setting, never matched to
    a size. `base`, if given, is the learned code's payload and reconstruction of one image, made
    once and reused by every setting tried on that image (rate control tries several)."""
    checkpoint: Checkpoint = field(repr=False)
    fixed: tuple[int, int] | None = None  # a mode's one layer (kind, step); None: the ladder
    variant: str = LAYERED
    base: tuple | None = field(default=None, repr=False, compare=False)  # (image, payload, pixels)
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
        return replace(self, base=(rgb, *codec.layered_base(self.checkpoint, rgb, step_shift=BASE_SHIFT)))

    def encode(self, rgb: np.ndarray, setting=None) -> bytes:
        setting = self.default if setting is None else int(setting)
        base = self.base[1:] if self.base is not None and self.base[0] is rgb else None
        return codec.encode_layers(self.checkpoint, rgb, step_shift=BASE_SHIFT, layer=self.layer(setting),
                                   base=base)[0]

    def decode(self, data: bytes) -> np.ndarray:
        return codec.decode(data, self.checkpoint)

    def describe(self, setting) -> str:
        kind, step = self.layer(setting)
        if kind == codec.PIXELS:
            return f"{self.checkpoint.name} + lossless layer" if step == residual.STEP_UNIT else \
                f"{self.checkpoint.name} + pixel layer, every error within {residual.max_error(step)}"
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
    return replace(layered(), fixed=(codec.PIXELS, step), variant=name)


def mode_names() -> list[str]:
    """The modes the app offers beside the code sizes."""
    return [LOSSLESS, *(f"{NEAR_LOSSLESS}{n}" for n in (1, 2, 4))]


def _jpeg2000(bpp: float) -> dict:
    # Irreversible 9/7 wavelet with the colour transform (mct=1), the rate set directly: a
    # compression ratio against 24-bit RGB.
    return dict(irreversible=True, mct=1, quality_mode="rates", quality_layers=[24.0 / bpp], no_jp2=True)


CLASSICAL: tuple[PillowCodec, ...] = (
    # Optimised Huffman tables, 4:2:0 chroma: what a careful user of libjpeg gets.
    PillowCodec("jpeg", "JPEG", "JPEG", lambda q: dict(quality=int(q), optimize=True, subsampling=2),
                "quality", Search(1, 100, "integer"), (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90), 65_500),
    PillowCodec("jpeg2000", "JPEG 2000", "JPEG2000", _jpeg2000, "target bpp", Search(0.01, 24.0, "rate"),
                (0.02, 0.03, 0.05, 0.08, 0.12, 0.18, 0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0)),
    PillowCodec("webp", "WebP", "WEBP", lambda q: dict(quality=float(q), method=6),
                "quality", Search(0, 100, "integer"), (2, 10, 20, 35, 50, 65, 75, 85, 92), 16_383),
    PillowCodec("heif", "HEIF (HEVC)", "HEIF", lambda q: dict(quality=int(q)),
                "quality", Search(1, 100, "integer"), (5, 15, 25, 35, 45, 55, 65, 75)),
    # libavif writes wider images than its decoder reads back (32,768 by default).
    PillowCodec("avif", "AVIF", "AVIF", lambda q: dict(quality=int(q), speed=6),
                "quality", Search(1, 100, "integer"), (5, 15, 25, 35, 45, 55, 65, 75, 85), 32_768),
    # libjxl at effort 7 (its default, the recommended trade-off), the quality a real number
    # (100 would be lossless, which the lossy encoder refuses).
    PillowCodec("jxl", "JPEG XL", "JXL", lambda q: dict(quality=float(q), effort=7),
                "quality", Search(0, 99, "continuous"), (0, 10, 25, 40, 55, 70, 80, 88, 95)),
)


def names() -> list[str]:
    """Every codec name, the learned codec first."""
    return [LEARNED, *(c.name for c in CLASSICAL)]


def matchable() -> list[str]:
    """The codecs that can be matched to another's file size."""
    return [c.name for c in CLASSICAL if c.search is not None]


def labels() -> dict[str, str]:
    """Human label of every codec name."""
    return {LEARNED: CycleCodec.label, **{c.name: c.label for c in CLASSICAL}}


def check(requested: list[str], allowed: list[str]) -> None:
    """ValueError naming the choices if any requested codec is not allowed here."""
    unknown = [n for n in requested if n not in allowed]
    if unknown:
        raise ValueError(f"unknown codec(s) {', '.join(unknown)} (choose from {', '.join(allowed)})")


def learned(code_size: str, rdoq_weight: float = DEFAULT_RDOQ_WEIGHT) -> Codec:
    """The learned codec at a code size, `LAYERED` (the largest with an enhancement layer) or a mode
    (`mode`: lossless, near-lossless); ValueError naming the installed sizes if unknown."""
    if code_size == LAYERED:
        return layered()
    if (entry := mode(code_size)) is not None:
        return entry
    return CycleCodec(ckpts.by_name(code_size), rdoq_weight)


def presets(rdoq_weight: float = DEFAULT_RDOQ_WEIGHT) -> list[CycleCodec]:
    """The learned codec at each installed code size, smallest first."""
    return [CycleCodec(ckpts.by_name(p.stem), rdoq_weight) for p in ckpts.available()]


def layered() -> LayeredCodec:
    """The learned codec's largest code size with an enhancement layer."""
    paths = ckpts.available()
    if not paths:
        raise ValueError(f"no checkpoints found in {ckpts.checkpoint_dir()}")
    return LayeredCodec(ckpts.by_name(paths[-1].stem))


def get(name: str) -> Codec:
    """The one entry of a classical codec; ValueError naming the choices if unknown."""
    check([name], [c.name for c in CLASSICAL])
    return next(c for c in CLASSICAL if c.name == name)


def family(name: str, rdoq_weight: float = DEFAULT_RDOQ_WEIGHT) -> list[Codec]:
    """Every entry of a name: the learned codec at each installed code size (smallest first), or
    the one entry of a classical codec. Its points over their settings make one RD curve."""
    if name == LEARNED:
        return [*presets(rdoq_weight), layered()]
    return [get(name)]
