"""Pack a training run's inputs small enough to carry to a remote GPU machine.

    python -m train.pack gpu --state runs/ctx3/state.pt

The GPU machines lent to this project take at most 64 MiB of files per call. The 143 MB of PNG
training photos fit as JPEG at quality 94 without chroma subsampling (44 MB; 42.4 dB on average,
37.7 at worst, over every sixth photo: above the 34 dB of the largest code size), and a run's state
fits with the optimiser's moments in bfloat16 (`train.fit --resume` casts them back to float32). Then, there:
`python -m train.fit --resume --device cuda --data gpu/data --out runs/gpu` with gpu/state.pt copied
to runs/gpu/.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from train.data import default_train_dir, image_files
from train.errors import TrainError, command
from train.state import load_state, save_state

QUALITY = 94


def pack_images(source: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for path in tqdm(image_files(source), desc="images"):
        name = "-".join(path.relative_to(source).with_suffix(".jpg").parts)
        Image.open(path).convert("RGB").save(out / name, "JPEG", quality=QUALITY, subsampling=0)


def pack_state(state_path: Path, out: Path) -> None:
    state = load_state(state_path)  # a damaged state must not travel
    for moments in state["optimizer"]["state"].values():
        for key in ("exp_avg", "exp_avg_sq"):
            moments[key] = moments[key].to(torch.bfloat16)
    save_state(state, out)  # atomic: never a half-written state


@command
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="folder to write (data/ and state.pt)")
    p.add_argument("--data", type=Path, default=default_train_dir())
    p.add_argument("--state", type=Path, default=None, help="a run's state.pt to resume there")
    args = p.parse_args(argv)
    if not image_files(args.data):
        raise TrainError(f"no images in {args.data}")
    if args.state and not args.state.is_file():
        raise TrainError(f"no such state file: {args.state}")
    pack_images(args.data, args.out / "data")
    if args.state:
        pack_state(args.state, args.out / "state.pt")
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {args.out}: {size / 2 ** 20:.1f} MiB")


if __name__ == "__main__":
    main()
