"""Hostile .cyc files and long runs: malformed files are refused (or decode to their stated size),
absurd sizes are refused at once, and large images are coded in bounded memory."""
import collections
import json
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

from conftest import REPO, at_thread_counts
from cycleapp.core import checkpoint, codec
from cycleapp.core.bitstream import BitstreamError, CycFile, code_shape
from fuzz_cyc import EXPECTED


def test_fuzzed_files_are_refused_or_decoded_to_their_stated_size():
    """3000 mutants of real files (about 20 s on one core; tests/fuzz_cyc.py runs more): `run`
    fails on any other exception, on a decode to another size, on a case slower than 5 s, and on a
    payload that runs dry or leaves data but is not refused as such."""
    script = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
import torch
torch.set_num_threads(1)
from fuzz_cyc import run
result = run(3000, seed=1)
print(json.dumps({"outcomes": [[k, o, n] for (k, o), n in result["outcomes"].items()],
                  "peak_mb": result["peak_mb"]}))
"""
    done = subprocess.run([sys.executable, "-c", script, str(REPO)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    outcomes = collections.Counter({(k, o): n for k, o, n in result["outcomes"]})
    assert sum(outcomes.values()) == 3000
    kinds = {kind for kind, _ in outcomes}
    assert {"field", "size", "checkpoint", "truncate", "extend", "flip", "payload flip", "payload cut",
            "payload add", "random payload", "dry", "leftover", "garbage"} <= kinds
    for kind in EXPECTED:  # every payload that runs dry or leaves data is among the errors
        assert outcomes[kind, "refused"] > 100 and outcomes[kind, "decoded"] == 0
    # The seal binds the payload to the header: no header edit decodes (CRC recomputed or not).
    for kind in ("field", "size", "checkpoint", "truncate", "extend", "flip"):
        assert outcomes[kind, "decoded"] == 0, kind
    assert result["peak_mb"] < 1500  # the whole process's peak (fresh: this run's alone)


@pytest.mark.parametrize("name", ["tiny", "huge"])
@pytest.mark.parametrize("payload", [b"", bytes(8), b"\x00\x00\x00\x00\x01\x00\x00\x00", bytes(range(256)) * 40])
def test_a_100_megapixel_header_over_a_small_payload_is_refused_at_once(name, payload):
    """The file of the issue (a 10000x10000 header, an empty payload, a correct CRC) and
    its cousins with the coder's 8-byte final state alone or 10 kB of data: refused within a
    second, before anything the size of the image is allocated."""
    ckpt = checkpoint.by_name(name)
    data = CycFile(ckpt.id, 10_000, 10_000, code_shape(ckpt.channels, 10_000, 10_000), payload).to_bytes()
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(BitstreamError, match="payload"):
            codec.decode(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    assert peak < 10_000_000


@pytest.mark.parametrize("threads, most_mb", [(1, 1000), (2, 1300)])
def test_a_4096x4096_image_codes_in_bounded_memory(threads, most_mb):
    """Encode and decode 16.8 megapixels (4x4 tiles) in a fresh process: its peak resident memory
    (interpreter, PyTorch and the checkpoint included) stays under 1 GB on one thread (docs/usage.md
    says 0.8), and under 1.3 GB at two, where two tiles are made at once (measured: 1.0)."""
    script = """
import sys
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
from cycleapp.core import checkpoint, codec
torch.set_num_threads(int(sys.argv[2]))
ckpt = checkpoint.by_name("tiny")
ramp = (np.arange(4096) % 256).astype(np.uint8)
rgb = np.empty((4096, 4096, 3), np.uint8)
for c in range(3):
    rgb[..., c] = ramp[:, None] // 2 + ramp[None, :] // (c + 2)
data = codec.encode(ckpt, rgb)
pixels = codec.decode(data)
# this process's own peak, before the check's own copies (its ru_maxrss would start at the forking
# parent's size, the test runner's: a gigabyte late in the suite)
peak = int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]) // 1024
assert pixels.shape == rgb.shape and np.abs(pixels[::7].astype(np.int16) - rgb[::7]).mean() < 8
print(peak)
"""
    done = subprocess.run([sys.executable, "-c", script, str(REPO), str(threads)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) < most_mb


@pytest.mark.parametrize("height, width", [(1, 2049), (2049, 17), (2048, 16)])
def test_decode_is_the_model_s_own_pass_across_the_tile_boundary(ckpt, height, width):
    """Just over and at the one-tile limit (2048 px), the decoder still reproduces the encoder's own
    quantised forward pass bit for bit."""
    rng = np.random.default_rng(height + width)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert np.array_equal(codec.decode(codec.encode(ckpt, rgb)), codec.reconstruct(ckpt, rgb))


def test_tile_seams_are_invisible(ckpt, photo):
    """The transform runs in tiles fixed by the image size alone (`codec.tile_size`), so the result
    never depends on memory. Tiles of 4 x 4 code positions against one tile for the whole image:
    the code is the same but for the rounding of a rare value that the float error moved across a
    half, and the pixels of the same code are within one level of each other (float error only: the
    halo covers the receptive field, tests/test_model.py)."""
    rgb = np.ascontiguousarray(photo[:200, :300])
    whole, tiled = codec.quantized_code(ckpt, rgb, tile=19), codec.quantized_code(ckpt, rgb, tile=4)
    assert whole.shape == tiled.shape == (1, ckpt.channels, 13, 19)
    assert (whole != tiled).float().mean() < 1e-3 and (whole - tiled).abs().max() <= 1
    pixels = codec.reconstruct_from_code(ckpt, whole, 200, 300, tiling=tiles_of(19))
    seams = codec.reconstruct_from_code(ckpt, whole, 200, 300, tiling=tiles_of(4))
    assert np.abs(pixels.astype(int) - seams).max() <= 1
    assert (pixels != seams).mean() < 1e-3
    assert np.array_equal(pixels, codec.reconstruct_from_code(ckpt, whole, 200, 300))  # one tile by default


def tiles_of(side: int):
    """A tiling of square tiles of this many code positions a side."""
    return lambda height, width: list(codec.tiles(height, width, side))


def test_tiles_made_side_by_side_are_the_tiles_made_one_after_another(photo):
    """Several tiles are made at once on worker threads, each on one thread: the very same pixels
    as one after another, however many threads PyTorch may use, and the caller's setting kept.
    (The largest code size on this photo, in tiles of 256 pixels, at two threads a convolution
    gives other pixels: the check can fail.)"""
    ckpt = checkpoint.by_name(checkpoint.available()[-1].stem)
    code = codec.quantized_code(ckpt, photo)
    made = at_thread_counts(lambda: codec.reconstruct_from_code(ckpt, code, *photo.shape[:2], tiling=tiles_of(16)))  # 2 x 3 tiles
    assert np.array_equal(made[1], made[2]) and np.array_equal(made[1], made[3])


def test_tiles_depend_on_the_image_size_alone():
    """Up to 2048 x 2048 pixels the whole image is one tile (the speed of the untiled transform);
    beyond, tiles of 1024 x 1024 pixels (bounded memory)."""
    assert codec.tile_size(86, 128) == 128 and codec.tile_size(1, 1) == 1
    assert codec.tile_size(129, 1) == codec.tile_size(625, 625) == codec.TILE == 64
    assert list(codec.tiles(3, 130, 64)) == [(0, 3, 0, 64), (0, 3, 64, 128), (0, 3, 128, 130)]


def test_format_13_tiles_split_the_code_evenly_whatever_the_threads(monkeypatch):
    """A format 13 base (`codec.even_tiles`): tiles of at most 64 x 128 code positions, the rows and
    columns split evenly (sides differing by one at most), covering the code once (a 2K photo: two
    tiles of whole rows). The rule is pinned: a file of it decodes only over the same base pixels.
    A decode makes its base by this rule, and the same pixels at any thread count."""
    for height, width in ((1, 1), (65, 13), (80, 13), (128, 103), (86, 128), (129, 300), (256, 256)):
        parts = codec.even_tiles(height, width)
        covered = np.zeros((height, width), int)
        for top, bottom, left, right in parts:
            assert 0 < bottom - top <= codec.TILED_ROWS and 0 < right - left <= codec.TILED_COLS
            covered[top:bottom, left:right] += 1
        assert (covered == 1).all()
        for sides in ({b - t for t, b, _, _ in parts}, {r - lft for _, _, lft, r in parts}):
            assert max(sides) - min(sides) <= 1
    assert codec.even_tiles(128, 103) == [(0, 64, 0, 103), (64, 128, 0, 103)]
    assert codec.even_tiles(65, 129) == [(0, 32, 0, 64), (0, 32, 64, 129), (32, 65, 0, 64), (32, 65, 64, 129)]
    assert codec.even_tiles(3, 300) == [(0, 3, 0, 100), (0, 3, 100, 200), (0, 3, 200, 300)]
    ckpt = checkpoint.by_name("tiny")
    rgb = np.random.default_rng(7).integers(0, 256, (1040, 40, 3), dtype=np.uint8)
    data, promised = codec.encode_layers(ckpt, rgb, layer=(codec.ADAPTIVE_TILED, 600))
    assert data[3] == 13 and len(codec.even_tiles(*code_shape(1, 40, 1040)[1:])) == 2
    made = at_thread_counts(lambda: codec.decode(data))
    assert np.array_equal(made[1], promised) and np.array_equal(made[1], made[2]) and np.array_equal(made[1], made[3])
    format_11 = codec.encode(ckpt, rgb, layer=(codec.ADAPTIVE_TRANSFORM, 600))
    rules = []
    reconstruct = codec.reconstruct_from_code
    monkeypatch.setattr(codec, "reconstruct_from_code", lambda *a, **k: rules.append(k.get("tiling")) or reconstruct(*a, **k))
    codec.decode(data)
    codec.decode(format_11)
    assert rules == [codec.even_tiles, codec.square_tiles]  # format 13's rule, then format 11's (format 8's)
