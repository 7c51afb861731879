"""The learned codec: RGB pixels <-> `.cyc` bytes with one checkpoint."""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch

from cycleapp.core import checkpoint as ckpts
from cycleapp.core import adaptive_layer, dct_layer, dct_predicted_layer, predicted_layer, residual
from cycleapp.core.bitstream import (FLAT, MAX_LAYER_PIXELS, MAX_LAYER_PIXELS_OF_KIND, STANDALONE, BitstreamError,
                                     CycFile, code_shape, unstorable_size)
from cycleapp.core.checkpoint import Checkpoint
from cycleapp.core.entropy import GRID_RATIO
from cycleapp.core.model import FACTOR


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255


def to_pixels(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float -> (H, W, 3) uint8, rounded and clipped."""
    return x[0].clamp(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).numpy()


# The transform runs on tiles, each with the model's halo of context around it, so that memory
# does not grow with the image beyond the code and the pixels themselves: a code up to WHOLE
# positions a side (2048 x 2048 pixels, most photographs) is one tile, a larger one is cut into
# tiles of TILE positions (1024 pixels; a tile's temporaries: about 200 MB). Never according to the
# memory at hand: a convolution's float results can depend in their last bits on the size of its
# input, so the tiling must depend on the image size alone for the output to be the same anywhere.
WHOLE, TILE = 128, 64


def tile_size(height: int, width: int) -> int:
    """The side of the tiles of a (height, width) code, in code positions."""
    return max(height, width) if max(height, width) <= WHOLE else TILE


def tiles(height: int, width: int, tile: int):
    """Code rows [top, bottom) and columns [left, right) of each tile of a (height, width) code."""
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            yield top, min(top + tile, height), left, min(left + tile, width)


def square_tiles(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """Format 8's tiles of a (height, width) code (`tile_size`): (top, bottom, left, right) each."""
    return list(tiles(height, width, tile_size(height, width)))


# The base of a format 13 file (layer kinds in TILED_BASE) is made in tiles of at most TILED_ROWS x
# TILED_COLS code positions, its rows and columns split evenly, whatever the image's size: a 2K
# photo is two tiles of whole rows, made side by side on two threads, where format 8's rule makes
# one tile of it on one thread (CHANGELOG 0.12.0 has the times). Wide tiles, since a tile's halo of
# 6 positions a side is work done twice; a tile's temporaries are about 0.25 GB.
TILED_ROWS, TILED_COLS = 64, 128


def even_tiles(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """Format 13's tiles of a (height, width) code: (top, bottom, left, right) each."""
    rows, cols = -(-height // TILED_ROWS), -(-width // TILED_COLS)
    return [(i * height // rows, (i + 1) * height // rows, j * width // cols, (j + 1) * width // cols)
            for i in range(rows) for j in range(cols)]


def _padded_window(rgb: np.ndarray, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Pixel rows [top, bottom) and columns [left, right) of the image replicate-padded on the
    bottom and the right (to whole 16x16 blocks), as a float tensor (1, 3, h, w)."""
    h, w = rgb.shape[:2]
    rows = np.minimum(np.arange(top, bottom), h - 1) if bottom > h else slice(top, bottom)
    cols = np.minimum(np.arange(left, right), w - 1) if right > w else slice(left, right)
    return to_tensor(rgb[rows][:, cols])


# Weight of the squared code error against bits in the encoder's rounding decisions, relative to
# the training loss (lambda * 255^2 * MSE + bpp); chosen on training images (README, "The model").
RDOQ_WEIGHT = 2.5
# Rate control: the steps of every channel after the DC can be scaled by GRID_RATIO ** (shift / 8),
# shift a signed byte in the header. Whole multiples of 8 move the coding tables by whole grid
# steps; in between, the nearest table is taken, so table choice stays integer arithmetic.
STEP_UNITS = 8
STEP_SHIFT_RANGE = (-128, 127)


def table_shift(step_shift: int) -> int:
    """The grid steps the coding tables move for a step shift (nearest, in integers)."""
    return (step_shift + STEP_UNITS // 2) // STEP_UNITS


def step_scales(ckpt: Checkpoint, step_shift: int) -> torch.Tensor:
    """Per channel, how much coarser than the checkpoint's steps the code is (1 for the DC)."""
    scales = torch.full((ckpt.channels,), GRID_RATIO ** (step_shift / STEP_UNITS), dtype=torch.float64)
    scales[0] = 1.0
    return scales


def check_step_shift(step_shift: int) -> None:
    lo, hi = STEP_SHIFT_RANGE
    if not (isinstance(step_shift, (int, np.integer)) and lo <= step_shift <= hi):
        raise ValueError(f"step shift must be an integer from {lo} to {hi}")


@torch.no_grad()
def quantized_code(ckpt: Checkpoint, rgb: np.ndarray, rdoq_weight: float = RDOQ_WEIGHT,
                   step_shift: int = 0, tile: int | None = None) -> torch.Tensor:
    """The integer code the file stores, int16 (1, C, H/16, W/16): rate-distortion optimised
    rounding, within the tables' range; computed tile by tile (tiles of `tile_size` unless given).

    A code error e in channel c costs about steps[c]^2 * e^2 / 3 of MSE per pixel (the decoder is
    close to orthonormal), and the training loss weighs MSE by lambda * 255^2 against bits. The
    rounding of a value reads its neighbours up to 2 positions away (contexts of prediction
    residuals), so each tile is rounded with that much more of the code around it, and the code
    there with the model's halo of pixels around it.
    """
    model = ckpt.model
    scales = step_scales(ckpt, step_shift)
    steps = model.log_steps[0].exp().double() * scales
    weight = rdoq_weight * model.config.sizes[0].lmbda * 255 ** 2 / 3 * steps ** 2
    tables = ckpt.tables.shifted(table_shift(step_shift))
    shape = code_shape(ckpt.channels, rgb.shape[1], rgb.shape[0])
    code = torch.empty((1, *shape), dtype=torch.int16)
    rounding, halo = 2, model.halo() + 2
    for top, bottom, left, right in tiles(*shape[1:], tile or tile_size(*shape[1:])):
        (t, b), (l, r) = _around(top, bottom, shape[1], halo), _around(left, right, shape[2], halo)
        x = _padded_window(rgb, FACTOR * t, FACTOR * b, FACTOR * l, FACTOR * r)
        y = model.encode(x, 0) / scales.float().view(1, -1, 1, 1)
        (qt, qb), (ql, qr) = _around(top, bottom, shape[1], rounding), _around(left, right, shape[2], rounding)
        q = tables.quantize(y[..., qt - t:qb - t, ql - l:qr - l], weight)
        code[..., top:bottom, left:right] = q[..., top - qt:bottom - qt, left - ql:right - ql].to(torch.int16)
    return code


def _around(start: int, end: int, size: int, margin: int) -> tuple[int, int]:
    """[start, end) widened by a margin on both sides, within [0, size)."""
    return max(0, start - margin), min(size, end + margin)


@contextmanager
def one_thread():
    """Run the transform on one thread. A convolution's float32 sums are split across threads, so
    their last bits (and a few pixels, by 1) can depend on the thread count: `huge` decodes a 2K
    photo to 34 other values at 2 threads than at 1, kodim04 to 6 (and a 16-core machine gave the
    same at 1 to 4 and 8 threads, not at 5 to 7). So every pixel a file decodes to is made on one
    thread, whatever the machine: a file decodes to the same pixels on any number of cores, and an
    enhancement layer, coded over its base's exact pixels, finds that base (its layer's seal binds
    the base's pixels: any other base is refused, never decoded). On two cores one thread costs
    nothing: the decoder's transform is small and one thread was as fast as two. (The setting is
    the calling thread's own: OpenMP's thread count is per thread.)"""
    with _one_thread:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield before
        finally:
            torch.set_num_threads(before)


_one_thread = threading.Lock()
# An image of several tiles (over 2048 pixels a side) has them made side by side, each on one thread
# (`one_thread`): the same pixels as one after another, in about half the time on two cores (a
# 4096x4096 `huge` file decoded in 4.6 s instead of 7.8 s). Two at most, and only where PyTorch may
# use two threads: each tile's temporaries are about 0.2 to 0.3 GB (that file's process peaked at
# 1.12 GB instead of 0.80), and two halve the time where the target machines have two cores.
MOST_TILES_AT_ONCE = 2


# Making tiles side by side and handing an encode to another thread both rest on PyTorch's number of
# threads being each thread's own, as it is with the OpenMP backend (PyTorch's builds for Linux, macOS
# and Windows); with another, a thread's setting would change another's decode, so neither is done.
OWN_THREAD_COUNTS = "parallel backend: OpenMP" in torch.__config__.parallel_info()


def submit_as_caller(pool: ThreadPoolExecutor, fn, *args) -> Future:
    """pool.submit(fn, *args), fn run with the caller's number of PyTorch threads: a new thread
    takes PyTorch's global setting of the moment, which `one_thread` lowers to 1 for a while, so
    the learned code an encode computes (its analysis runs on all the threads) could depend on
    timing; with the caller's, it is the code the caller would compute itself. Run here and now
    where threads do not keep their own setting (`OWN_THREAD_COUNTS`) or cannot start (at the
    interpreter's shutdown)."""
    threads = torch.get_num_threads()

    def run():
        torch.set_num_threads(threads)
        return fn(*args)
    if OWN_THREAD_COUNTS:
        try:
            return pool.submit(run)
        except RuntimeError:  # (no new thread at the interpreter's shutdown)
            pass
    done = Future()
    try:
        done.set_result(fn(*args))
    except Exception as e:  # (raised where the caller asks for the result, as from a thread)
        done.set_exception(e)
    return done


@torch.no_grad()
def reconstruct_from_code(ckpt: Checkpoint, code: torch.Tensor, height: int, width: int,
                          step_shift: int = 0, tiling=square_tiles) -> np.ndarray:
    """The (height, width, 3) uint8 pixels of an integer code (1, C, H/16, W/16), tile by tile
    (`tiling(H/16, W/16)`: the tiles' bounds, format 8's `square_tiles` or format 13's `even_tiles`,
    `tiling_of`), each decoded with the model's halo of code around it."""
    scales = step_scales(ckpt, step_shift).float().view(1, -1, 1, 1)
    out = np.empty((height, width, 3), np.uint8)
    h, w = code.shape[-2:]
    halo = ckpt.model.halo()

    @torch.no_grad()
    def make(bounds: tuple[int, int, int, int]) -> None:
        top, bottom, left, right = bounds
        (t, b), (l, r) = _around(top, bottom, h, halo), _around(left, right, w, halo)
        x_hat = ckpt.model.decode(code[..., t:b, l:r].float() * scales, 0)
        rows = slice(FACTOR * top, min(FACTOR * bottom, height))
        cols = slice(FACTOR * left, min(FACTOR * right, width))
        out[rows, cols] = to_pixels(x_hat[..., rows.start - FACTOR * t:rows.stop - FACTOR * t,
                                          cols.start - FACTOR * l:cols.stop - FACTOR * l])

    parts = tiling(h, w)
    with one_thread() as threads:
        at_once = min(len(parts), threads, MOST_TILES_AT_ONCE) if OWN_THREAD_COUNTS else 1
        made = None
        if at_once > 1:
            # every worker set to one thread (its own setting: a new thread starts at PyTorch's)
            # before any starts a tile
            ready = threading.Barrier(at_once)
            with ThreadPoolExecutor(at_once, initializer=lambda: (torch.set_num_threads(1), ready.wait(60))) as pool:
                try:
                    made = [pool.submit(make, bounds) for bounds in parts]
                except RuntimeError:  # (no new thread at the interpreter's shutdown)
                    ready.abort()
        if made is None:
            for bounds in parts:
                make(bounds)
        else:
            for tile_made in made:
                tile_made.result()  # (a tile's exception is raised here)
    return out


def reconstruct(ckpt: Checkpoint, rgb: np.ndarray, rdoq_weight: float = RDOQ_WEIGHT,
                step_shift: int = 0) -> np.ndarray:
    """The model's own quantised forward pass (no entropy coding): what decode must reproduce."""
    code = quantized_code(ckpt, rgb, rdoq_weight, step_shift)
    return reconstruct_from_code(ckpt, code, *rgb.shape[:2], step_shift)


# The enhancement layers, by kind: format 9's pixel domain and transform domain (the near-lossless,
# lossless and high-rate files of release 0.9.0, still read), and format 10's predicted pixel layer
# (near-lossless and lossless files to release 0.11.1) and predicted transform-domain layer (lossy
# files above the presets), written from release 0.10.0 on; format 11's adaptive transform layer
# (lossy files above the presets in releases 0.11.0 and 0.11.1); format 12's predicted pixel layer
# alone, over no learned code (near-lossless and lossless files from release 0.12.0 on: `STANDALONE`);
# format 13's adaptive transform layer over a base made in `even_tiles` (lossy files above the
# presets from release 0.12.0 on: `TILED_BASE`).
PIXELS, TRANSFORM, PREDICTED, PREDICTED_TRANSFORM, ADAPTIVE_TRANSFORM, PREDICTED_ALONE, ADAPTIVE_TILED = range(1, 8)
LAYERS = {PIXELS: residual, TRANSFORM: dct_layer, PREDICTED: predicted_layer,
          PREDICTED_TRANSFORM: dct_predicted_layer, ADAPTIVE_TRANSFORM: adaptive_layer,
          PREDICTED_ALONE: predicted_layer, ADAPTIVE_TILED: adaptive_layer}
TILED_BASE = (ADAPTIVE_TILED,)  # the layer kinds whose base is made in `even_tiles`


def tiling_of(layer_kind: int):
    """The tiles the base of a file with this layer kind (0: none) is made in."""
    return even_tiles if layer_kind in TILED_BASE else square_tiles


def flat_base(height: int, width: int) -> np.ndarray:
    """The base of a layer that stands alone (`bitstream.STANDALONE`): a flat grey."""
    return np.full((height, width, 3), FLAT, np.uint8)


def encode(ckpt: Checkpoint | None, rgb: np.ndarray, rdoq_weight: float = RDOQ_WEIGHT, step_shift: int = 0,
           layer: tuple[int, int] | None = None) -> bytes:
    """Compress an (H, W, 3) uint8 image into the bytes of a .cyc file.

    rdoq_weight: the encoder's rounding trade-off (inf: plain rounding); step_shift: quantisation
    steps GRID_RATIO ** (step_shift / 8) times the checkpoint's (positive: a smaller file);
    layer: (kind, step) of an enhancement layer over the learned code's reconstruction (LAYERS),
    the step in sixteenths of a pixel value (PIXELS at 16 is lossless, at 16 * (2N + 1) keeps every
    pixel within N), or None. A layer that stands alone (PREDICTED_ALONE) has no learned code: its
    file names no checkpoint (`ckpt` must be None) and takes no step shift (`step_shift` is not used)."""
    return encode_layers(ckpt, rgb, rdoq_weight, step_shift, layer)[0]


def encode_layers(ckpt: Checkpoint | None, rgb: np.ndarray, rdoq_weight: float = RDOQ_WEIGHT, step_shift: int = 0,
                  layer: tuple[int, int] | None = None, base: tuple[bytes, np.ndarray] | None = None,
                  layer_encoder=None) -> tuple[bytes, np.ndarray | None]:
    """`encode`, and the pixels the file decodes to where the encoder knows them without decoding
    (with an enhancement layer made here; None without one). `base`: the learned code's payload and
    reconstruction at this checkpoint and step shift, if the caller has them already, and
    `layer_encoder` the layer kind's encoder made for this image over that base
    (`adaptive_layer.Encoder`): rate control tries several steps over one base, and asks that encoder
    for the pixels of the few files it compares (`pixels_at`), so with it the pixels are None."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < 1:
        raise ValueError("expected an RGB image of shape (H, W, 3), uint8, at least 1x1")
    if problem := unstorable_size(rgb.shape[1], rgb.shape[0]):
        raise ValueError(f"cannot encode this image: {problem}")
    check_step_shift(step_shift)
    kind, step = layer or (0, 0)
    if layer is not None and (kind not in LAYERS or not isinstance(step, (int, np.integer))
                              or not LAYERS[kind].MIN_STEP <= step <= LAYERS[kind].MAX_STEP):
        raise ValueError(f"an enhancement layer is (kind, step): kind one of {sorted(LAYERS)}, its step "
                         f"within that kind's MIN_STEP and MAX_STEP")
    most = MAX_LAYER_PIXELS_OF_KIND.get(kind, MAX_LAYER_PIXELS)
    if kind and rgb.shape[0] * rgb.shape[1] > most:
        raise ValueError(f"{'near-lossless and lossless' if kind in MAX_LAYER_PIXELS_OF_KIND else 'high rates'} "
                         f"take images of at most {most:,} "
                         f"pixels (this one has {rgb.shape[0] * rgb.shape[1]:,})")
    if (ckpt is None) != (kind in STANDALONE):
        raise ValueError("a checkpoint is needed for a learned code, and none for a layer that stands alone "
                         f"(kinds {', '.join(map(str, STANDALONE))})")
    if kind in STANDALONE:
        cyc = CycFile.standalone(rgb.shape[1], rgb.shape[0], int(kind), int(step))
        pixels = flat_base(*rgb.shape[:2])
    else:
        cyc = CycFile(ckpt.id, rgb.shape[1], rgb.shape[0], code_shape(ckpt.channels, rgb.shape[1], rgb.shape[0]),
                      b"", int(step_shift), int(kind), int(step))
        if base is None:
            base = base_layer(ckpt, rgb, rdoq_weight, step_shift, cyc.seal, with_pixels=bool(kind),
                              tiling=tiling_of(kind))
        cyc.payload, pixels = base
    if kind:
        seal = cyc.layer_seal(pixels)
        if layer_encoder is not None:
            cyc.layer, pixels = layer_encoder.payload(int(step), seal), None
        else:
            cyc.layer, pixels = LAYERS[kind].encode_layer(rgb, pixels, int(step), seal)
    return cyc.to_bytes(), pixels if kind else None


def layered_base(ckpt: Checkpoint, rgb: np.ndarray, layer_kind: int, rdoq_weight: float = RDOQ_WEIGHT,
                 step_shift: int = 0) -> tuple[bytes, np.ndarray]:
    """The learned code's payload and pixels of an image as a file with a layer of this kind holds
    it (its seal is that file's header's: the version is in it), for `encode_layers` to reuse over
    many steps."""
    shape = code_shape(ckpt.channels, rgb.shape[1], rgb.shape[0])
    seal = CycFile(ckpt.id, rgb.shape[1], rgb.shape[0], shape, b"", int(step_shift), layer_kind=layer_kind).seal
    return base_layer(ckpt, rgb, rdoq_weight, step_shift, seal, tiling=tiling_of(layer_kind))


def base_layer(ckpt: Checkpoint, rgb: np.ndarray, rdoq_weight: float, step_shift: int, seal: int,
               with_pixels: bool = True, tiling=square_tiles) -> tuple[bytes, np.ndarray | None]:
    """The learned code's payload of an image, and (if asked) the pixels it decodes to (made in the
    tiles of `tiling`: `tiling_of` the file's layer kind)."""
    code = quantized_code(ckpt, rgb, rdoq_weight, step_shift)
    payload = ckpt.tables.shifted(table_shift(step_shift)).encode(code[0].numpy(), seal)
    if not with_pixels:
        return payload, None
    return payload, reconstruct_from_code(ckpt, code, *rgb.shape[:2], step_shift, tiling)


def read_code(data: bytes, ckpt: Checkpoint | None = None) -> tuple[CycFile, Checkpoint, np.ndarray]:
    """The container, its checkpoint (found by its id if not given) and the integer code of .cyc
    bytes: everything decode does but the transform (a view of the code needs no more)."""
    return _read_code(CycFile.from_bytes(data), ckpt)


def _read_code(cyc: CycFile, ckpt: Checkpoint | None) -> tuple[CycFile, Checkpoint, np.ndarray]:
    if not cyc.has_code:
        raise BitstreamError("this .cyc file holds no learned code, only a lossless or near-lossless layer")
    if ckpt is None:
        ckpt = ckpts.by_id(cyc.checkpoint_id)
    elif ckpt.id != cyc.checkpoint_id:
        raise ValueError(f"this file was made by checkpoint {cyc.checkpoint_id.hex()}, "
                         f"not by '{ckpt.name}' ({ckpt.id.hex()})")
    expected = code_shape(ckpt.channels, cyc.width, cyc.height)
    if cyc.code_shape != expected:
        raise BitstreamError(f"corrupted .cyc file (code shape {cyc.code_shape}, expected {expected})")
    _check_layer(cyc)
    try:
        code = ckpt.tables.shifted(table_shift(cyc.step_shift)).decode(cyc.payload, cyc.code_shape, cyc.seal)
    except ValueError as e:
        raise BitstreamError(f"corrupted .cyc payload ({e})") from None
    return cyc, ckpt, code


def _check_layer(cyc: CycFile) -> None:
    """Refuse an enhancement layer whose step its kind never takes, or whose payload is larger than
    any its image could need (before anything is decoded)."""
    layer = LAYERS.get(cyc.layer_kind)
    if layer and not layer.MIN_STEP <= cyc.layer_step <= layer.MAX_STEP:
        raise BitstreamError(f"corrupted .cyc file (an enhancement layer of kind {cyc.layer_kind} at step "
                             f"{cyc.layer_step}: that kind's steps are {layer.MIN_STEP} to {layer.MAX_STEP})")
    if layer and len(cyc.layer) > layer.payload_limit(cyc.height, cyc.width):
        raise BitstreamError(f"corrupted .cyc file (an enhancement layer of {len(cyc.layer)} bytes "
                             f"for a {cyc.width}x{cyc.height} image)")


def decode(data: bytes, ckpt: Checkpoint | None = None) -> np.ndarray:
    """Decompress .cyc bytes to (H, W, 3) uint8 pixels; finds the checkpoint by its id if not given
    (a layer that stands alone names none, and needs none).

    Whatever the file says, memory stays bounded: the container caps the image size, the payload's
    size must fit the code's (checked before decoding) and the transform runs in tiles (an
    enhancement layer works on the whole image: about 100 bytes a pixel, 300 for the predicted pixel
    layer's: a 2048x2048 lossless file decodes in 1.7 GB)."""
    cyc = CycFile.from_bytes(data)
    if cyc.has_code:
        _, ckpt, code = _read_code(cyc, ckpt)
        base = reconstruct_from_code(ckpt, torch.from_numpy(code)[None], cyc.height, cyc.width, cyc.step_shift,
                                     tiling=tiling_of(cyc.layer_kind))
    else:
        _check_layer(cyc)
        base = flat_base(cyc.height, cyc.width)
    if not cyc.layer_kind:
        return base
    try:
        return LAYERS[cyc.layer_kind].decode_layer(cyc.layer, base, cyc.layer_step, cyc.layer_seal(base))
    except ValueError as e:
        if not cyc.has_code:
            raise BitstreamError(f"corrupted .cyc enhancement layer ({e})") from None
        raise BitstreamError(f"corrupted .cyc enhancement layer, or a base this machine's transform "
                             f"makes differently from the encoder's ({e})") from None
