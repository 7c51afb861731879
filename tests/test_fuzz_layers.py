"""Hostile layered files (formats 9 to 13: an enhancement layer, over a learned code but in format
12): malformed ones are refused with one clear error or decode to their stated size
(tests/fuzz_cyc.py runs more, of every format), and the predicted pixel layer's extreme but valid
streams decode exactly."""
import collections
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from cycleapp.core import predicted_layer
from fuzz_cyc import KINDS, LAYER_EXPECTED, LAYER_KINDS, noisy_ramp, textures

CASES = 500


def fuzz(version: int, seed: int) -> tuple[dict, collections.Counter]:
    """CASES mutants of one layered format's base files in a fresh process (`fuzz_cyc.run`: it fails
    on any other exception, on a decode to another size, on a case slower than 5 s, and on a layer
    that runs dry or leaves data but is not refused as such); the result and its outcomes."""
    script = f"""
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
import torch
torch.set_num_threads(1)
from fuzz_cyc import run
result = run({CASES}, seed={seed}, versions=({version},))
print(json.dumps({{"outcomes": [[k, o, n] for (k, o), n in result["outcomes"].items()],
                  "files": result["files"], "peak_mb": result["peak_mb"]}}))
"""
    done = subprocess.run([sys.executable, "-c", script, str(REPO)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    outcomes = collections.Counter({(k, o): n for k, o, n in result["outcomes"]})
    assert sum(outcomes.values()) == CASES
    assert {kind for kind, _ in outcomes} == set(KINDS + LAYER_KINDS)
    for kind in LAYER_EXPECTED:  # every layer that runs dry or leaves data is among the errors
        assert outcomes[kind, "refused"] > 5 and outcomes[kind, "decoded"] == 0
    # The two seals bind both payloads to every header field and tell them apart: no header edit,
    # no swap of the payloads, no format 8 payload under a layered header (or the other way), no
    # other kind's layer sealed as this one, no other layered version decodes.
    for kind in ("field", "layer field", "size", "checkpoint", "truncate", "extend", "flip", "swap",
                 "v8 header, layered body", "layered header, v8 body", "foreign layer", "other version"):
        assert outcomes[kind, "decoded"] == 0, kind
    assert result["peak_mb"] < 1500  # the whole process's peak (fresh: this run's alone)
    assert {v for v, _, _ in result["files"]} == {version}
    return result, outcomes


def test_fuzzed_format_9_files_are_refused_or_decoded_to_their_stated_size():
    """500 mutants of format 9 files of both its layer kinds (about 15 s on one core)."""
    result, _ = fuzz(9, seed=3)
    # The mutants' sources: lossless and near-lossless files (pixel layers), transform layers at a
    # fine and a coarse step.
    steps = collections.defaultdict(set)
    for _, kind, step in result["files"]:
        steps[kind].add(step)
    assert 16 in steps[1] and len(steps[1]) > 1 and min(steps[2]) <= 32 and max(steps[2]) >= 1000


def test_fuzzed_format_10_files_are_refused_or_decoded_to_their_stated_size():
    """500 mutants of format 10 files (about 10 s on one core): the predicted pixel layer (kind 3),
    lossless and near-lossless at a fine and a coarse step, 1x1 up to 160x160 (per-tile classes),
    and the predicted transform layer (kind 4)."""
    result, _ = fuzz(10, seed=10)
    assert {kind for _, kind, _ in result["files"]} == {3, 4}
    steps = {step for _, _, step in result["files"]}
    assert 16 in steps and min(steps - {16}) <= 80 and max(steps) >= 500


def test_fuzzed_format_11_files_are_refused_or_decoded_to_their_stated_size():
    """500 mutants of format 11 files: the adaptive transform layer (kind 5) at a fine and a coarse
    step, 17x33 up to 160x160 (every transform size)."""
    result, _ = fuzz(11, seed=11)
    assert {kind for _, kind, _ in result["files"]} == {5}
    steps = {step for _, _, step in result["files"]}
    assert min(steps) <= 32 and max(steps) >= 1000


def test_fuzzed_format_12_files_are_refused_or_decoded_to_their_stated_size():
    """500 mutants of format 12 files: the predicted pixel layer alone (kind 6, no learned code),
    lossless and near-lossless at a fine and a coarse step, 1x1 up to 160x160 (per-tile classes)."""
    result, _ = fuzz(12, seed=12)
    assert {kind for _, kind, _ in result["files"]} == {6}
    steps = {step for _, _, step in result["files"]}
    assert 16 in steps and min(steps - {16}) <= 80 and max(steps) >= 500


def extreme_fit(rng):
    """A stand-in for `predicted_layer.fit`: weights at the ends of their range or random within
    it, as a hostile encoder may write them (every one is a valid weight)."""
    def fit(X, y, shift=0, irls=0, rows=None):
        lo, hi = -predicted_layer.WEIGHT_RANGE, predicted_layer.WEIGHT_RANGE - 1
        return rng.choice([lo, hi, int(rng.integers(lo, hi + 1))], size=X.shape[1]).astype(np.int64)
    return fit


@pytest.mark.parametrize("shape, step", [((160, 160), 16), ((160, 160), 528), ((3, 300), 17), ((1, 1), 16)])
def test_extreme_weights_decode_to_the_encoder_s_pixels(monkeypatch, shape, step):
    """A layer whose predictor and energy weights all lie at the ends of their range (predictions
    far outside the pixels' range, every energy in the top bucket, the largest products the decoder
    forms: `features` says why they stay exact) and, in the 160x160 image's large passes, per-tile
    classes of such weights: the decoder reproduces the encoder's pixels, with no other error."""
    rng = np.random.default_rng(step)
    rgb = textures(*shape, rng) if min(shape) > 16 else noisy_ramp(*shape, rng)
    base = noisy_ramp(*shape, rng)
    classes = []
    correction = predicted_layer.correction
    monkeypatch.setattr(predicted_layer, "fit", extreme_fit(rng))
    monkeypatch.setattr(predicted_layer, "correction", lambda X, W, cls, all_classes=False: (
        classes.append(len(X)) if cls is not None and not all_classes else None, correction(X, W, cls, all_classes))[1])
    payload, pixels = predicted_layer.encode_layer(rgb, base, step, seal=(1 << 32) + 12345)
    classes.clear()
    assert np.array_equal(predicted_layer.decode_layer(payload, base, step, (1 << 32) + 12345), pixels)
    assert bool(classes) == (shape == (160, 160))  # passes decoded with per-tile classes
    if step == 16:  # lossless whatever the predictions
        assert np.array_equal(pixels, rgb)


def test_fuzzed_format_13_files_are_refused_or_decoded_to_their_stated_size():
    """500 mutants of format 13 files: kind 5's layer over a base made in even tiles (kind 7) at a
    fine and a coarse step, one of them two tiles."""
    result, _ = fuzz(13, seed=13)
    assert {kind for _, kind, _ in result["files"]} == {7}
    steps = {step for _, _, step in result["files"]}
    assert min(steps) <= 32 and max(steps) >= 1000
