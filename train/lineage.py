"""Where a model's weights came from: the `lineage` that a run's state and each checkpoint's JSON carry.

A run does not outlive its machine; the checkpoints do. So the chain of runs that made a set of
weights travels with them: a list of stages, oldest first, each with the training steps it did, the
batch, the data and the hardware (steps per device). `train.fit` records in its state the lineage
of what it started from (the JSON of `--init-from checkpoints`, or another run's state and that run
itself) and the steps it does on each device; `train.calibrate` adds the run it calibrates;
`train.export` writes the state's lineage and the run's own stage into every code size's JSON.
Paths are written relative to the repository (or as the run recorded them): a JSON names no
machine's absolute path. What a record does not say is written "unknown".
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from train.data import REPO

UNKNOWN = "unknown"
PATH_ARGS = ("data", "out", "init_from")  # the run arguments that are paths


def relative(path) -> str:
    """A path as a JSON may hold it: an absolute one relative to the repository, a relative one as
    given (it was relative to where the run started, which is not known here)."""
    path = Path(path)
    return os.path.relpath(path, REPO) if path.is_absolute() else str(path)


def portable_args(args: dict) -> dict:
    """A run's recorded arguments with their paths made relative (`relative`)."""
    return {k: relative(v) if k in PATH_ARGS and v is not None else v for k, v in args.items()}


def hardware_name(device: torch.device, processes: int = 1) -> str:
    """What a run trains on, as its lineage names it: the GPU's model or the CPU's cores."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)"
    return name if processes == 1 else f"{processes} x {name}"


def hardware_steps(recorded: dict | None, start: int, step: int, name: str) -> dict:
    """The steps a run did on each device: what its state recorded at `start` (steps a state of
    before this record did are `unknown`) and the steps from `start` to `step` on `name`."""
    steps = dict(recorded) if recorded is not None else ({UNKNOWN: start} if start else {})
    steps[name] = steps.get(name, 0) + step - start
    return steps


def stage(state: dict, run: Path) -> dict:
    """The stage a run's state is: a training run (its steps, batch, data, devices), or a
    calibration of one (`train.calibrate`: no steps)."""
    args = state.get("args") or {}
    if "calibrated" in state:
        done = state["calibrated"]
        return {"run": relative(run), "tool": "train.calibrate", "steps": 0,
                "data": relative(done["data"]) if "data" in done else UNKNOWN,
                "hardware": done.get("hardware", UNKNOWN)}
    batch = (f"{args['batch_size']} x {args['patch_size']}x{args['patch_size']}"
             if "batch_size" in args and "patch_size" in args else UNKNOWN)
    steps = state.get("step", UNKNOWN)
    return {"run": relative(run), "tool": "train.fit", "steps": steps, "batch": batch,
            "data": relative(args["data"]) if args.get("data") else UNKNOWN,
            "hardware": state.get("hardware") or {UNKNOWN: steps}}


def before(state: dict) -> list[dict]:
    """The stages before a run, as its state recorded them (a state older than this record: one
    `unknown` stage)."""
    recorded = state.get("lineage")
    return list(recorded) if recorded is not None else [{"run": UNKNOWN, "note": "not recorded"}]


def of_run(state: dict, run: Path) -> list[dict]:
    """The whole lineage of a run's weights: the stages before it, then the run itself."""
    return before(state) + [stage(state, run)]


def of_checkpoints(directory: Path) -> list[dict]:
    """The lineage a folder of checkpoints records (every code size's JSON holds the same)."""
    for meta in sorted(Path(directory).glob("*.json")):
        recorded = json.loads(meta.read_text()).get("lineage")
        if recorded is not None:
            return recorded
    return [{"run": relative(directory), "note": "checkpoints without a recorded lineage"}]


def total_steps(lineage: list[dict]):
    """The training steps of every stage together, or `unknown` if a stage's are not known."""
    steps = [s.get("steps", UNKNOWN) for s in lineage]
    return sum(steps) if all(isinstance(s, int) for s in steps) else UNKNOWN
