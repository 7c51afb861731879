"""Files last: every .cyc that a release wrote decodes with this one to the very same pixels.

tests/golden/golden.json lists files written by earlier releases (tests/golden/vN/), each with the
SHA-256 of the pixels that release decoded it to. A release adds its own files; none is ever
removed or rewritten (docs/release-policy.md).

The learned transform is float32 arithmetic: a machine whose convolutions sum in another order (another
processor's kernels) can make a base value that lies within about 1e-4 of a half round the other way.
A file whose enhancement layer sits on a learned base is then refused in one line (its layer's seal
binds the base's exact pixels), never decoded to other pixels (docs/format.md, "Tiles"): on an AVX2
machine (AMD EPYC) 5 of the 29 such golden files, written on the machines of earlier sessions, were.
So a golden file decodes here to its release's pixels, or, only if it is such a file, it is refused
so, and then its refusal must be this machine's rounding: rounding one or two of its base values
nearest a half the other way must give the release's very pixels, through the layer's own decoder
(which checks the file whole, seal included). A file for which no such change is found passes with
a warning that says so, as long as some of its base values lie that near a half (one of the five
above: a 200x1040 one, whose base changed in more places).
"""
import functools
import hashlib
import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import cycleapp
from cycleapp.core import codec
from cycleapp.core.bitstream import OLDER_RELEASES, READABLE, BitstreamError, CycFile

GOLDEN = Path(__file__).parent / "golden"
ENTRIES = json.loads((GOLDEN / "golden.json").read_text())
BASE_DIFFERS = "a base this machine's transform makes differently"
NEAR_HALF = 1e-4  # how near a half a base value must lie for another machine's float32 to round it otherwise
SINGLES, PAIRS = 40, 12  # the base values nearest a half tried alone, and in pairs


def sha(pixels: np.ndarray) -> str:
    return hashlib.sha256(pixels.tobytes()).hexdigest()


def base_values(cyc: CycFile) -> np.ndarray:
    """The learned base of a file as this machine computes it before rounding, 0 to 255 (float64):
    `codec.reconstruct_from_code` on one thread (its tiles one after another, in the file's tiling's
    order), each tile's values caught on their way to `to_pixels`."""
    _, ckpt, code = codec.read_code(cyc.to_bytes())
    h, w = code.shape[-2:]
    parts = codec.tiling_of(cyc.layer_kind)(h, w)
    values, caught = np.empty((cyc.height, cyc.width, 3)), []
    to_pixels = codec.to_pixels
    codec.to_pixels = lambda x: caught.append(x[0].clamp(0, 1).mul(255).permute(1, 2, 0).double().numpy()) or to_pixels(x)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        codec.reconstruct_from_code(ckpt, torch.from_numpy(code)[None], cyc.height, cyc.width, cyc.step_shift,
                                    codec.tiling_of(cyc.layer_kind))
    finally:
        codec.to_pixels = to_pixels
        torch.set_num_threads(before)
    for (top, bottom, left, right), v in zip(parts, caught, strict=True):
        f = codec.FACTOR
        values[f * top:min(f * bottom, cyc.height), f * left:min(f * right, cyc.width)] = v
    return values


@functools.cache
def outcome(file: str, threads: int | None = None) -> str:
    """The SHA-256 of what a golden file decodes to here (at this many PyTorch threads, if given), or
    "refused" (the base-mismatch refusal only; any other error is raised)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        return sha(cycleapp.decode((GOLDEN / file).read_bytes()))
    except BitstreamError as e:
        cyc = CycFile.from_bytes((GOLDEN / file).read_bytes())
        assert cyc.has_code and cyc.layer_kind and BASE_DIFFERS in str(e), (file, str(e))
        return "refused"
    finally:
        torch.set_num_threads(before)


def rounded_otherwise(entry) -> tuple[int, ...] | None:
    """The base values (flat indices, at most two) whose other rounding makes a refused layered file
    decode to its release's pixels, or None if none among those nearest a half does; AssertionError
    if none of its base values lies within NEAR_HALF of a half (nothing float32 could round otherwise)."""
    cyc = CycFile.from_bytes((GOLDEN / entry["file"]).read_bytes())
    values = base_values(cyc)
    base = np.rint(values)
    nearness = np.abs(values - np.floor(values) - 0.5).ravel()
    near = [int(i) for i in np.argsort(nearness, kind="stable") if nearness[i] < NEAR_HALF]
    assert near, f"{entry['file']}: refused, yet no base value lies within {NEAR_HALF} of a half"
    other = (2 * np.floor(values) + 1 - base).ravel()  # each value's other rounding
    layer = codec.LAYERS[cyc.layer_kind]
    for flips in itertools.chain(((i,) for i in near[:SINGLES]), itertools.combinations(near[:PAIRS], 2)):
        b = base.ravel().copy()
        b[list(flips)] = other[list(flips)]
        b = b.reshape(base.shape).astype(np.uint8)
        try:
            pixels = layer.decode_layer(cyc.layer, b, cyc.layer_step, cyc.layer_seal(b))
        except ValueError:
            continue
        if sha(pixels) == entry["pixels_sha256"]:
            return flips
    return None


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_every_golden_file_decodes_to_the_pixels_its_release_gave(entry):
    data = (GOLDEN / entry["file"]).read_bytes()
    assert data[3] == entry["format"] and len(data) == entry["bytes"]
    decoded = outcome(entry["file"])
    if decoded != "refused":
        assert list(cycleapp.decode(data).shape) == entry["shape"]
        assert decoded == entry["pixels_sha256"], entry["file"]
        return
    flips = rounded_otherwise(entry)
    if flips is None:
        warnings.warn(f"{entry['file']}: refused here (its layer's seal did not match the base this machine makes), "
                      f"and no other rounding of its {PAIRS} base values nearest a half, one or two at a time, "
                      f"gives its pixels: this machine's base differs in more places, or a regression")
    else:
        warnings.warn(f"{entry['file']}: refused here, its base made otherwise by this machine's float32: with "
                      f"{len(flips)} value(s) nearest a half rounded the other way it decodes to its release's pixels")


def test_golden_files_of_every_layer_kind_decode_on_this_machine():
    """Of each (format, layer kind), at least one golden file decodes to its release's pixels here
    unaided, so a decoder that broke a kind's files fails here on any machine."""
    kinds: dict[tuple[int, int], list] = {}
    for entry in ENTRIES:
        cyc = CycFile.from_bytes((GOLDEN / entry["file"]).read_bytes())
        kinds.setdefault((cyc.version, cyc.layer_kind), []).append(entry)
    failed = [kind for kind, entries in kinds.items()
              if not any(outcome(e["file"]) == e["pixels_sha256"] for e in entries)]
    assert not failed, f"no golden file of these (format, layer kind) decodes here: {failed}"


def test_a_file_with_an_enhancement_layer_decodes_alike_on_any_thread_count():
    """Its base is made on one thread (a convolution's float sums can depend on the thread count): at
    six threads every golden file of format 9 on has the outcome it has at one, pixels or refusal."""
    for entry in (e for e in ENTRIES if e["format"] >= 9):
        assert outcome(entry["file"], 6) == outcome(entry["file"], 1), entry["file"]


def test_every_readable_format_has_golden_files():
    assert {e["format"] for e in ENTRIES} == set(READABLE)


def test_a_file_of_an_early_format_names_the_commit_that_reads_it():
    data = bytearray((GOLDEN / ENTRIES[0]["file"]).read_bytes())
    for version, commit in OLDER_RELEASES.items():
        data[3] = version
        with pytest.raises(BitstreamError, match=f"commit {commit}.*git checkout {commit}"):
            CycFile.from_bytes(bytes(data))
    data[3] = max(READABLE) + 1
    with pytest.raises(BitstreamError, match="newer CycleCodec"):
        CycFile.from_bytes(bytes(data))


def test_version_is_the_same_in_the_package_and_pyproject():
    text = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert f'version = "{cycleapp.__version__}"' in text
    changelog = (Path(__file__).parent.parent / "CHANGELOG.md").read_text()
    assert f"## {cycleapp.__version__}" in changelog
