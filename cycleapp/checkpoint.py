"""Checkpoints: one code size per file pair, `NAME.safetensors` (float16 weights, float32
coding tables, int16 table indices and predictors, no pickle) and `NAME.json` (metadata). The short id of a
checkpoint is a hash of its weights file, written into every `.cyc` so a file is never decoded
with the wrong weights.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .entropy import CodingTables
from .model import CycleModel, ModelConfig

_HERE = Path(__file__).resolve().parent
# In a checkout the checkpoints sit beside the package; installed by pip they travel inside it.
DEFAULT_DIR = next((d for d in (_HERE.parent / "checkpoints", _HERE / "checkpoints") if d.is_dir()),
                   _HERE.parent / "checkpoints")
ID_BYTES = 8
TABLE_KEYS = ("tables.dc", "tables.laplace", "tables.index", "tables.predictor")


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


def save_checkpoint(model: CycleModel, meta: dict, directory: Path, name: str) -> Path:
    """Write NAME.safetensors + NAME.json atomically; the model must hold exactly one code size."""
    assert len(model.config.sizes) == 1, "a checkpoint holds one code size"
    directory.mkdir(parents=True, exist_ok=True)
    # Weights are stored (and therefore used by the codec) in float16: half the size. The model
    # is rounded first, so the tables are tabulated from exactly the stored density.
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    tensors.update(zip(TABLE_KEYS, model.densities[0].tables()))
    weights = directory / f"{name}.safetensors"
    tmp = weights.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, weights)
    meta = dict(meta, name=name, config=model.config.to_dict(), id=file_id(weights).hex())
    tmp = directory / f"{name}.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, directory / f"{name}.json")
    return weights


def file_id(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()[:ID_BYTES]


def load_checkpoint(path: Path) -> Checkpoint:
    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text())
    tensors = load_file(str(path))
    tables = CodingTables(*(tensors.pop(k) for k in TABLE_KEYS))
    model = CycleModel(ModelConfig.from_dict(meta["config"]))
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    model.eval().requires_grad_(False)
    return Checkpoint(path.stem, model, tables, meta, file_id(path))


def available(directory: Path | None = None) -> list[Path]:
    """Checkpoint files, ordered from the smallest code (lowest rate) to the largest."""
    directory = checkpoint_dir() if directory is None else Path(directory)
    paths = [p for p in directory.glob("*.safetensors") if p.with_suffix(".json").exists()]
    order = lambda p: json.loads(p.with_suffix(".json").read_text())["config"]["sizes"][0]["lmbda"]
    return sorted(paths, key=order)


_cache: dict[Path, Checkpoint] = {}


def by_name(name: str, directory: Path | None = None) -> Checkpoint:
    """Load (once) the checkpoint of a code size; ValueError naming the choices if unknown."""
    paths = {p.stem: p for p in available(directory)}
    if name not in paths:
        choices = ", ".join(paths) or "none installed"
        raise ValueError(f"unknown code size '{name}' (available: {choices})")
    path = paths[name].resolve()
    if path not in _cache:
        _cache[path] = load_checkpoint(path)
    return _cache[path]


def by_id(cid: bytes, directory: Path | None = None) -> Checkpoint:
    for p in available(directory):
        meta = json.loads(p.with_suffix(".json").read_text())
        if meta.get("id") == cid.hex():
            ckpt = by_name(p.stem, directory)
            if ckpt.id == cid:
                return ckpt
    raise ValueError(f"this file was made by checkpoint {cid.hex()}, which is not installed here")
