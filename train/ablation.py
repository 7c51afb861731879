"""Ablation at one code size, same budget for every variant: tied vs untied weights, with vs without
the cycle loss.   python -m train.ablation --steps 1200 --out runs/ablation

Each variant starts from the same orthogonal initialisation and seed (`--seed`: run two to see the
spread), trains `--steps` steps of the 'medium' size only, then is exported and measured on Kodak
with real files.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from cycleapp.core.checkpoint import load_checkpoint, save_checkpoints
from train.data import kodak_dir
from train.errors import TrainError, command
from train.evaluate import measure_checkpoint
from train.export import load_run
from train.fit import SIZES

VARIANTS = {
    "tied + cycle loss (shipped)": [],
    "untied + cycle loss": ["--untied"],
    "tied, no cycle loss": ["--beta", "0"],
}


@command
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--size", default="medium")
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kernel", type=int, default=8, choices=[4, 8],
                   help="down-sampling kernel of every variant: 8 = lapped, as shipped; 4 = block transform")
    args = p.parse_args(argv)
    if not kodak_dir():
        raise TrainError("the ablation is measured on ../shared/data/kodak, which is not here")
    lmbda = SIZES[args.size].lmbda
    rows = {}
    for i, (name, extra) in enumerate(VARIANTS.items()):
        run = args.out / f"variant{i}"
        cmd = [sys.executable, "-m", "train.fit", "--out", str(run), "--steps", str(args.steps), "--sizes", args.size,
               "--val-every", "0", "--threads", str(args.threads), "--seed", str(args.seed),
               "--kernel", str(args.kernel), *extra]
        if (run / "state.pt").exists():
            cmd.append("--resume")
        subprocess.run(cmd, check=True)
        model, state = load_run(run)
        path, = save_checkpoints(model, [{"steps": state["step"]}], run / "export")
        r = measure_checkpoint(load_checkpoint(path), kodak_dir())
        r["rd_loss"] = lmbda * 255 ** 2 * 10 ** (-r["psnr"] / 10) + r["bpp"]  # lambda * 255^2 * MSE(mean PSNR) + bpp
        r["parameters"] = sum(v.numel() for k, v in model.state_dict().items() if not k.startswith("densities"))
        rows[name] = r
        print(f"{name}: {r['bpp']:.4f} bpp, {r['psnr']:.2f} dB, RD loss {r['rd_loss']:.4f}", flush=True)
    (args.out / "ablation.json").write_text(json.dumps({"steps": args.steps, "size": args.size, "lambda": lmbda,
                                                        "seed": args.seed, "kernel": args.kernel,
                                                        "variants": rows}, indent=1) + "\n")
    print(f"\n| variant ({args.size}, {args.steps} steps) | bpp | PSNR (dB) | RD loss | transform parameters |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        print(f"| {name} | {r['bpp']:.4f} | {r['psnr']:.2f} | {r['rd_loss']:.4f} | {r['parameters']:,} |")


if __name__ == "__main__":
    main()
