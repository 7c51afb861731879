"""Export a training run to the shipped checkpoint files: `python -m train.export RUN_DIR`.

The shared transform is written once, with the AC coding tables every code size shares
(transform.safetensors); each code size becomes NAME.safetensors + NAME.json holding that size's
quantisation steps and entropy model, its DC tables and table indices. The JSON also says where the
weights came from (`lineage`: the stages before the run and the run itself, train/lineage.py; the
run's arguments, paths relative) and the Kodak bpp/PSNR measured on the exported file format at
export time. The JSON is not part of a checkpoint's id (which hashes the .safetensors files).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from cycleapp.core.checkpoint import Checkpoint, checkpoint_dir, load_checkpoint, save_checkpoints, size_state
from cycleapp.core.entropy import CodingTables
from cycleapp.core.model import CycleModel
from train import lineage
from train.data import kodak_dir
from train.errors import TrainError, command
from train.state import load_state, model_from_state


def single_size(model: CycleModel, index: int) -> CycleModel:
    """A model holding only code size `index` of a nested model (code layer cut to its channels)."""
    size = model.config.sizes[index]
    single = CycleModel(replace(model.config, sizes=[size]))
    single.load_state_dict(size_state(model.state_dict(), index, size.channels))
    return single.eval().requires_grad_(False)


def nested_from_checkpoints(directory: Path) -> CycleModel:
    """The nested model that the shipped checkpoints were cut from (the inverse of single_size).

    Runs do not outlive a machine; the checkpoints do, so a new run can start from them
    (`train.fit --init-from checkpoints`). The widest code size gives the shared transform with
    its whole code layer.
    """
    from cycleapp.core.checkpoint import available, is_own
    singles = [load_checkpoint(p).model for p in available(directory)]
    if not singles:
        raise TrainError(f"no checkpoints in {directory}")
    widest = max(singles, key=lambda m: m.config.sizes[0].channels)
    model = CycleModel(replace(widest.config, sizes=[m.config.sizes[0] for m in singles]))
    state = {k: v for k, v in widest.state_dict().items() if not is_own(k)}
    for i, single in enumerate(singles):
        for key, value in single.state_dict().items():
            if is_own(key):
                parts = key.split(".")
                state[".".join([parts[0], str(i), *parts[2:]])] = value
    model.load_state_dict(state)
    return model


def as_checkpoint(model: CycleModel, index: int) -> Checkpoint:
    """An in-memory checkpoint (tables computed now) for validation during training."""
    single = single_size(model, index)
    return Checkpoint(single.config.sizes[0].name, single, CodingTables(*single.densities[0].tables()),
                      {}, bytes(8))


def load_run(run_dir: Path) -> tuple[CycleModel, dict]:
    """A run's model and state, checked (TrainError for a missing or damaged state.pt)."""
    path = Path(run_dir) / "state.pt"
    state = load_state(path)
    return model_from_state(state, path), state


def metadata(state: dict, run: Path, lmbda: float) -> dict:
    """What a code size's JSON says of the run it was exported from: its lambda, where its weights
    came from (`lineage`, and the training steps of all its stages together) and the arguments of
    the last training run (`train_args`; a calibration keeps those of the run it calibrated)."""
    stages = lineage.of_run(state, run)
    args = lineage.portable_args(state["args"])
    return {"lambda": lmbda, "train_data": args["data"], "train_args": args,
            "total_steps": lineage.total_steps(stages), "lineage": stages}


@command
def main(argv=None) -> None:
    from train.evaluate import measure_checkpoint  # evaluation needs the codec stack

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="training run directory (holds state.pt)")
    p.add_argument("--out", type=Path, default=checkpoint_dir())
    args = p.parse_args(argv)
    model, state = load_run(args.run)
    metas = [metadata(state, args.run, size.lmbda) for size in model.config.sizes]
    for size, path in zip(model.config.sizes, save_checkpoints(model, metas, args.out)):
        if kodak_dir():
            result = measure_checkpoint(load_checkpoint(path), kodak_dir())
            meta_path = path.with_suffix(".json")
            full = json.loads(meta_path.read_text())
            full["kodak"] = {"bpp": result["bpp"], "psnr": result["psnr"], "images": result["images"]}
            meta_path.write_text(json.dumps(full, indent=2) + "\n")
            print(f"{size.name}: {result['bpp']:.3f} bpp, {result['psnr']:.2f} dB on Kodak")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
