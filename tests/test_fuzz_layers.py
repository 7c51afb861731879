"""Hostile format 9 files (a learned code plus an enhancement layer): malformed ones are refused with
one clear error or decode to their stated size (tests/fuzz_cyc.py runs more, of both formats)."""
import collections
import json
import subprocess
import sys

from conftest import REPO
from fuzz_cyc import KINDS, LAYER_EXPECTED, LAYER_KINDS

CASES = 500


def test_fuzzed_layered_files_are_refused_or_decoded_to_their_stated_size():
    """500 mutants of format 9 files of both layer kinds (about 15 s on one core): `run` fails on any
    other exception, on a decode to another size, on a case slower than 5 s, and on a layer that
    runs dry or leaves data but is not refused as such."""
    script = f"""
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
import torch
torch.set_num_threads(1)
from fuzz_cyc import run
result = run({CASES}, seed=3, versions=(9,))
print(json.dumps({{"outcomes": [[k, o, n] for (k, o), n in result["outcomes"].items()],
                  "files": result["files"], "peak_mb": result["peak_mb"]}}))
"""
    done = subprocess.run([sys.executable, "-c", script, str(REPO)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    # The mutants' sources: lossless and near-lossless files (pixel layers), transform layers at a
    # fine and a coarse step.
    assert {version for version, _, _ in result["files"]} == {9}
    steps = collections.defaultdict(set)
    for _, kind, step in result["files"]:
        steps[kind].add(step)
    assert 16 in steps[1] and len(steps[1]) > 1 and min(steps[2]) <= 32 and max(steps[2]) >= 1000
    outcomes = collections.Counter({(k, o): n for k, o, n in result["outcomes"]})
    assert sum(outcomes.values()) == CASES
    assert {kind for kind, _ in outcomes} == set(KINDS + LAYER_KINDS)
    for kind in LAYER_EXPECTED:  # every layer that runs dry or leaves data is among the errors
        assert outcomes[kind, "refused"] > 5 and outcomes[kind, "decoded"] == 0
    # The two seals bind both payloads to every header field and tell them apart: no header edit,
    # no swap of the payloads, no format 8 payload under a format 9 header (or the other way) decodes.
    for kind in ("field", "layer field", "size", "checkpoint", "truncate", "extend", "flip", "swap",
                 "v8 header, v9 body", "v9 header, v8 body"):
        assert outcomes[kind, "decoded"] == 0, kind
    assert result["peak_mb"] < 1500  # the whole process's peak (fresh: this run's alone)
