"""Checkpoints. The code sizes share one transform (a nested code) and one set of AC coding tables,
so a checkpoint folder stores them once, in `transform.safetensors` (the float16 weights of every
layer, the code layer at its widest, and the float32 `entropy.ac_tables`), and for each code size
the parts it has of its own: `NAME.safetensors` (its quantisation steps and entropy model in
float16, its float32 DC tables, int16 table indices and predictors; no pickle) and `NAME.json`
(metadata, with the SHA-256 of the transform file it was exported with). A code size's short id is
a hash of both files, written into every `.cyc` so a file is never decoded with the wrong weights.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import safetensors.torch
import torch

from cycleapp.core.entropy import CodingTables, ac_tables
from cycleapp.core.model import CycleModel, ModelConfig

_PACKAGE = Path(__file__).resolve().parents[1]  # cycleapp/
# In a checkout the checkpoints sit beside the package; installed by pip they travel inside it.
DEFAULT_DIR = next((d for d in (_PACKAGE.parent / "checkpoints", _PACKAGE / "checkpoints") if d.is_dir()),
                   _PACKAGE.parent / "checkpoints")
ID_BYTES = 8
TABLE_KEYS = ("tables.dc", "tables.ac", "tables.index", "tables.predictor", "tables.activity")  # CodingTables' order
SHARED_TABLES = "tables.ac"  # the one table set every code size codes with, in the transform's file
TRANSFORM = "transform.safetensors"
OWN = ("log_steps", "densities")  # the state-dict entries each code size has of its own, by size index


def checkpoint_dir() -> Path:
    return Path(os.environ.get("CYCLECODEC_CHECKPOINTS", DEFAULT_DIR))


@dataclass
class Checkpoint:
    name: str
    model: CycleModel
    tables: CodingTables
    meta: dict
    id: bytes  # ID_BYTES bytes

    @property
    def channels(self) -> int:
        return self.model.config.sizes[0].channels

    def describe(self) -> str:
        """One line for `sizes`: name, code shape, typical bpp."""
        kodak = self.meta.get("kodak") or {}
        bpp = f"~{kodak['bpp']:.2f} bpp, {kodak['psnr']:.1f} dB on Kodak" if kodak else "not measured"
        return f"{self.name}\tcode {self.channels} x H/16 x W/16\t{bpp}"


def save_checkpoints(model: CycleModel, metas: list[dict], directory: Path) -> list[Path]:
    """Write the transform of `model` once, then each of its code sizes (NAME.safetensors + NAME.json,
    `metas` in the order of `model.config.sizes`), every file atomically; the code sizes' paths.

    Weights are stored (and therefore used by the codec) in float16, half the size; a rounded copy of
    the model tabulates each size's tables (the DC's, the AC table indices), so they come from exactly
    the stored density. The AC tables, which every size indexes, go into the transform's file. A folder
    holds one export: the code sizes of an earlier one that this model lacks are removed, since they
    could not load beside the new transform."""
    config = model.config
    if any(size.name == Path(TRANSFORM).stem for size in config.sizes):
        raise ValueError(f"a code size cannot be called '{Path(TRANSFORM).stem}'")
    directory.mkdir(parents=True, exist_ok=True)
    for stale in set(available(directory)) - {directory / f"{s.name}.safetensors" for s in config.sizes}:
        stale.with_suffix(".json").unlink()
        stale.unlink()
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    rounded = copy.deepcopy(model)
    rounded.load_state_dict({k: v.float() for k, v in state.items()})
    transform = safetensors.torch.save({**{k: v for k, v in state.items() if not is_own(k)},
                                        SHARED_TABLES: ac_tables()})
    _write(directory / TRANSFORM, transform)
    paths = []
    for i, (size, meta) in enumerate(zip(config.sizes, metas, strict=True)):
        own = {k: v for k, v in size_state(state, i, size.channels).items() if is_own(k)}
        own.update((k, v) for k, v in zip(TABLE_KEYS, rounded.densities[i].tables()) if k != SHARED_TABLES)
        data = safetensors.torch.save(own)
        path = directory / f"{size.name}.safetensors"
        _write(path, data)
        meta = dict(meta, name=size.name, config=replace(config, sizes=[size]).to_dict(),
                    transform_sha256=hashlib.sha256(transform).hexdigest(), id=checkpoint_id(transform, data).hex())
        _write(path.with_suffix(".json"), (json.dumps(meta, indent=2) + "\n").encode())
        paths.append(path)
    return paths


def is_own(key: str) -> bool:
    """Whether a state-dict entry belongs to one code size (its steps, its entropy model)."""
    return key.split(".")[0] in OWN


def size_state(state: dict, index: int, channels: int) -> dict:
    """The state of a single-size model holding code size `index` (of `channels` channels) of a
    nested model's state: that size's own entries, renumbered as size 0, and the shared transform
    with its code layer cut to the size's channels. Export, the checkpoint files and validation
    during training all cut a size this one way."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if is_own(key):
            if int(parts[1]) == index:
                out[".".join([parts[0], "0", *parts[2:]])] = value
        else:
            out[key] = value[:channels] if parts[-1] == "code" else value
    return out


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def checkpoint_id(transform: bytes, own: bytes) -> bytes:
    """The id a .cyc file names its code size by: a hash of the transform and of the size's own file."""
    return hashlib.sha256(transform + own).digest()[:ID_BYTES]


def load_checkpoint(path: Path) -> Checkpoint:
    """One code size: its own file and the folder's transform, exactly as exported together (their
    hash must be the id in its JSON); ValueError for a missing, foreign or damaged file."""
    path = Path(path)
    transform_path = path.with_name(TRANSFORM)
    if not transform_path.is_file():
        raise ValueError(f"checkpoint '{path.stem}' has no {TRANSFORM} beside it (export the run again)")
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
        transform, own = transform_path.read_bytes(), path.read_bytes()
        if hashlib.sha256(transform).hexdigest() != meta.get("transform_sha256"):
            raise ValueError(f"checkpoint '{path.stem}' was exported with another {TRANSFORM} (export the run again)")
        if checkpoint_id(transform, own).hex() != meta.get("id"):
            raise ValueError(f"checkpoint '{path.stem}' is damaged or not the file its JSON describes")
        shared, tensors = safetensors.torch.load(transform), safetensors.torch.load(own)
        if missing := [k for k in TABLE_KEYS if k not in (shared if k == SHARED_TABLES else tensors)]:
            raise ValueError(f"checkpoint '{path.stem}' is from an earlier format (no {missing[0]}): "
                             "export its run again with this release")
        tensors[SHARED_TABLES] = shared.pop(SHARED_TABLES)
        # stored, so that coding never depends on how this machine rounds gammaincc, but checked:
        # a file may lie, and tables that are not the release's are not what its bits were measured on
        ac, expected = tensors[SHARED_TABLES], ac_tables()
        alike = ac.dtype == expected.dtype and ac.shape == expected.shape  # allclose would broadcast
        if not (alike and torch.allclose(ac, expected, rtol=1e-5, atol=0)):
            raise ValueError(f"checkpoint '{path.stem}' has AC coding tables that are not this release's "
                             "(export its run again with this release)")
        tables = CodingTables(*(tensors.pop(k) for k in TABLE_KEYS))
        config = ModelConfig.from_dict(meta["config"])
        state = size_state({**shared, **tensors}, 0, config.sizes[0].channels)
        model = CycleModel(config)
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except ValueError:
        raise
    except Exception as e:  # a JSON edited by hand: a missing key, a config the weights do not fit
        raise ValueError(f"checkpoint '{path.stem}' is damaged ({type(e).__name__})") from None
    model.eval().requires_grad_(False)
    return Checkpoint(path.stem, model, tables, meta, checkpoint_id(transform, own))


def available(directory: Path | None = None) -> list[Path]:
    """Checkpoint files, ordered from the smallest code (lowest rate) to the largest."""
    directory = checkpoint_dir() if directory is None else Path(directory)
    paths = [p for p in directory.glob("*.safetensors") if p.with_suffix(".json").exists()]
    order = lambda p: json.loads(p.with_suffix(".json").read_text())["config"]["sizes"][0]["lmbda"]
    return sorted(paths, key=order)


class Store:
    """The checkpoints this process has loaded, each once (by its resolved path): loading one reads
    and checks some megabytes, and a server or a sweep asks for the same few all the time. The API,
    the CLI and the app share the default store (`by_name`, `by_id`); a test or a tool that wants
    its own builds another."""

    def __init__(self):
        self.loaded: dict[Path, Checkpoint] = {}

    def by_name(self, name: str, directory: Path | None = None) -> Checkpoint:
        """The checkpoint of a code size; ValueError naming the choices if unknown."""
        paths = {p.stem: p for p in available(directory)}
        if name not in paths:
            choices = ", ".join(paths) or "none installed"
            raise ValueError(f"unknown code size '{name}' (available: {choices})")
        path = paths[name].resolve()
        if path not in self.loaded:
            self.loaded[path] = load_checkpoint(path)
        return self.loaded[path]

    def by_id(self, cid: bytes, directory: Path | None = None) -> Checkpoint:
        """The checkpoint a .cyc file names; ValueError if it is not installed."""
        for p in available(directory):
            meta = json.loads(p.with_suffix(".json").read_text())
            if meta.get("id") == cid.hex():
                ckpt = self.by_name(p.stem, directory)
                if ckpt.id == cid:
                    return ckpt
        raise ValueError(f"this file was made by checkpoint {cid.hex()}, which is not installed here")


STORE = Store()


def by_name(name: str, directory: Path | None = None) -> Checkpoint:
    """Load (once, in the default store) the checkpoint of a code size; ValueError naming the
    choices if unknown."""
    return STORE.by_name(name, directory)


def by_id(cid: bytes, directory: Path | None = None) -> Checkpoint:
    """The checkpoint a .cyc file names, from the default store; ValueError if not installed."""
    return STORE.by_id(cid, directory)
