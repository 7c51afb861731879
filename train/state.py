"""A training run's state file (state.pt): written atomically, checked before it is used.

torch.load checks nothing: one flipped byte inside a tensor loads silently. So `save_state` stores a
SHA-256 of the state's contents (every tensor's bytes, dtype and shape, and every other value) in
the state itself, and `load_state` recomputes it. Being inside the file, the checksum is replaced
atomically with it, and it travels with it (train.pack's copy, a state split for a transfer and put
back together with save_state). It covers what is loaded, not the zip container: one flipped bit
in a zip header field that torch's reader uses and Python's zipfile ignores (the "directory" flag
of a member) reads a tensor as zeros with every CRC intact. The zip's own CRC-32s are checked
first, which also covers states written before this checksum existed (they still load).
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
import zipfile
from pathlib import Path

import torch

from cycleapp.core.model import CycleModel, ModelConfig
from train.errors import TrainError, first_line

# what train.fit needs to resume; another run's state given to --init-from needs only "model"
RUN_KEYS = ("model", "optimizer", "step", "config", "args", "rng", "torch_rng")


def save_state(state: dict, path: Path) -> None:
    """Write `state` with its checksum to `path` atomically: a kill or a crash leaves the old file
    or the new one, never a part."""
    state = {k: v for k, v in state.items() if k != "sha256"}
    state["sha256"] = content_digest(state)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())  # the data on disk before the rename makes it the state
    os.replace(tmp, path)


def load_state(path: Path, keys: tuple[str, ...] = RUN_KEYS) -> dict:
    """The state saved at `path` (tensors on the CPU, checksum checked and removed); TrainError for
    a missing, damaged or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"no state file {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()  # reads every member and checks its CRC-32
    except Exception as e:  # not a zip, truncated, or headers that do not parse
        raise TrainError(f"{path} is not a readable training state ({first_line(e)})")
    if damaged is not None:
        raise TrainError(f"{path} is damaged (checksum mismatch in {damaged})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # an archive of something else: other objects, another format
        raise TrainError(f"{path} is not a training state ({first_line(e)})")
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing or not isinstance(state["model"], dict):
        raise TrainError(f"{path} is not a training state (no {', '.join(missing) or 'model weights'})")
    expected = state.pop("sha256", None)
    if expected is None:
        print(f"note: {path} holds no checksum of its contents (saved before they had one); "
              "its zip CRCs were checked", file=sys.stderr)
    elif expected != content_digest(state):
        raise TrainError(f"{path} is damaged (its contents do not match their checksum)")
    return state


def content_digest(value) -> str:
    """SHA-256 of a state's values: tensors by dtype, shape and bytes, the rest by repr."""
    h = hashlib.sha256()
    feed(h, value)
    return h.hexdigest()


def feed(h, value) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"tensor {t.dtype} {tuple(value.shape)};".encode())
        h.update(memoryview(t.view(torch.uint8).numpy()))
    elif isinstance(value, dict):
        h.update(f"dict {len(value)};".encode())
        for key in sorted(value, key=repr):
            h.update(f"{key!r}:".encode())
            feed(h, value[key])
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__} {len(value)};".encode())
        for item in value:
            feed(h, item)
    else:
        h.update(f"{value!r};".encode())


def model_from_state(state: dict, path: Path) -> CycleModel:
    """The model a run's state describes, with its weights (TrainError if they do not fit).
    A state saved before the coding tables had shapes (format 7) holds Laplace tables only: the
    model's own default shapes; one of stage 17 holds them as `densities.N.shape`, the buffer's
    earlier name."""
    try:
        model = CycleModel(ModelConfig.from_dict(state["config"]))
        own = model.state_dict()
        weights = {re.sub(r"^(densities\.\d+)\.shape$", r"\1.shape_index", k): v for k, v in state["model"].items()}
        model.load_state_dict({**{k: v for k, v in own.items() if k.endswith(".shape_index")}, **weights})
    except Exception as e:
        raise TrainError(f"{path} does not fit the model it describes ({first_line(e)})")
    return model

