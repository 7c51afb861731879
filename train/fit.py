"""Train the cycle model: `python -m train.fit --out runs/main` (resumable with --resume).

Loss = lambda * 255^2 * MSE (or 1 - MS-SSIM) + bpp + beta * cycle + gamma * sparsity,
one code size per step in turn (a nested code: every size shares the transform).
Ctrl-C or SIGTERM saves the state (checksummed, atomically) and stops; --resume continues exactly.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from pytorch_msssim import ms_ssim
from tqdm import tqdm

from cycleapp.core import entropy
from cycleapp.core.layers import pad_kernel
from cycleapp.core.model import CodeSize, CycleModel, ModelConfig
from train.data import CropSampler, default_train_dir, kodak_dir, load_images
from train.export import as_checkpoint, nested_from_checkpoints
from train.state import first_line, load_state, model_from_state, save_state

# The shipped code sizes: (name, code channels, lambda). Smaller codes for lower rates.
SIZES = {
    "tiny": CodeSize("tiny", 64, 0.0006),
    "small": CodeSize("small", 96, 0.0015),
    "medium": CodeSize("medium", 160, 0.004),
    "large": CodeSize("large", 224, 0.01),
    "huge": CodeSize("huge", 320, 0.025),
}
MS_SSIM_SCALE = 1000.0  # puts (1 - MS-SSIM) on roughly the scale of 255^2 * MSE
MS_SSIM_WEIGHTS = [0.0448, 0.2856, 0.3001, 0.2363]  # four scales: fits 128-pixel crops
# What a run is, as opposed to where it runs (device, threads, data, saves): a resumed run keeps it.
RECIPE = ("sizes", "steps", "batch_size", "patch_size", "lr", "seed", "width", "kernel", "blocks", "untied",
          "beta", "gamma", "distortion", "balanced", "val_every", "val_images", "prefit_iterations")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=",".join(SIZES), help="comma-separated code sizes to train")
    p.add_argument("--steps", type=int, default=100_000, help="total steps (a resumed run continues to it)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4, help="transform learning rate (entropy model and steps: 30x)")
    p.add_argument("--data", type=Path, default=default_train_dir())
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/main"))
    p.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start the transform, quantisation steps and entropy models (where they still fit) "
                        "from another run's state.pt "
                        "or from a folder of checkpoints")
    p.add_argument("--width", type=int, default=320, help="channels of the widest code")
    p.add_argument("--kernel", type=int, default=8, choices=[4, 8],
                   help="down-sampling kernel: 4 = block transform, 8 = lapped (overlapping)")
    p.add_argument("--blocks", type=int, default=2,
                   help="residual blocks at the code's resolution (blocks beyond --init-from's start as the identity)")
    p.add_argument("--untied", action="store_true", help="ablation: decoder with its own weights")
    p.add_argument("--beta", type=float, default=0.1, help="cycle-consistency weight (0: no cycle pass)")
    p.add_argument("--gamma", type=float, default=1e-3, help="L1 sparsity weight on the code")
    p.add_argument("--distortion", default="mse", choices=["mse", "ms-ssim"])
    p.add_argument("--balanced", action="store_true",
                   help="weigh each crop's rate-distortion loss by the inverse of its size (crop_weights)")
    p.add_argument("--val-every", type=int, default=1000, help="steps between Kodak validations")
    p.add_argument("--val-images", type=int, default=4)
    p.add_argument("--save-minutes", type=float, default=5.0)
    p.add_argument("--prefit-iterations", type=int, default=300,
                   help="iterations per code size of the entropy models' fit before training "
                        "(fit_densities; the tests shorten it to save time, 0 skips it)")
    args = p.parse_args(argv)
    p.set_defaults(**dict.fromkeys(vars(args)))  # every default None: what is left is what argv gave
    args.given = [k for k, v in vars(p.parse_args(argv)).items() if v is not None]
    return args


def adopt_recipe(args, recorded: dict) -> None:
    """A resumed run goes on as the run it resumes: each option of RECIPE that the command line
    leaves out takes the run's recorded value, not the default (a resume without --lr once went on
    at ten times its run's learning rate). Options given, --steps the most common, still win."""
    for key in RECIPE:
        if key not in args.given and key in recorded:
            setattr(args, key, recorded[key])


def crop_weights(rd: torch.Tensor) -> torch.Tensor:
    """Weights of a batch's crops from their rate-distortion losses (detached): the inverse of each
    loss, floored at a tenth of the batch's mean so that a blank crop cannot take the whole batch.

    A plain mean lets busy crops, whose losses are ten times a smooth crop's, set the shared
    transform's course; weighted so, every crop's relative gain counts the same (the gradient of the
    mean log-loss), as it does in a per-image BD-rate, and the smooth photos of modern cameras get
    their say."""
    return 1 / rd.clamp_min(0.1 * rd.mean())


def learning_rate(base: float, step: int, total: int) -> float:
    """Short warm-up, constant, then a cosine decay over the last 20 % of the run."""
    warm = min(1.0, (step + 1) / 200)
    tail = max(0.0, (step - 0.8 * total) / (0.2 * total))
    return base * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * tail)))


class Stop:
    """Ctrl-C (SIGINT) and SIGTERM: stop a run without losing what it has done.

    Before the model exists there is nothing to save, so a signal quits at once. After, it asks the
    run to stop at the end of the current step (or entropy-fit iteration, or validated code size),
    save its state atomically and exit 0, so that --resume continues exactly where it stopped.
    """

    def __init__(self):
        self.requested: str | None = None  # the signal's name, once one came
        self.armed = False  # set once the model exists

    def __enter__(self) -> "Stop":
        self.previous = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def handle(self, signum, frame) -> None:
        # no printing here: a handler that writes while the run is writing (tqdm) can raise
        name = signal.Signals(signum).name
        if not self.armed:
            raise SystemExit(f"stopped by {name} before the model existed: nothing to save")
        self.requested = self.requested or name


def save_run(path: Path, model, opt, step: int, args, sampler: CropSampler, fit: dict | None = None) -> None:
    """The run's state: weights, optimiser, step, random state (and an unfinished entropy fit)."""
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
             "config": model.config.to_dict(), "args": {k: str(v) if isinstance(v, Path) else v
                                                       for k, v in vars(args).items() if k != "given"},
             "rng": sampler.g.get_state(), "torch_rng": torch.get_rng_state()}
    if args.device == "cuda":  # the training noise is drawn on the GPU, from its own generator
        state["cuda_rng"] = torch.cuda.get_rng_state(next(model.parameters()).device)  # this rank's GPU
    if fit is not None:
        state["fit"] = fit
    save_state(state, path)


def trim_log(path: Path, step: int) -> None:
    """Keep the log's lines up to `step`, the step the run starts from.

    A run killed after its last save (kill -9, a lost machine) logged steps that the resumed run
    does again; without this they would appear twice. A line torn by the kill goes too.
    """
    if not path.exists():
        return
    lines = path.read_text(errors="replace").splitlines()
    kept = [line for line in lines if logged_step(line) <= step]
    if kept != lines:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)


def logged_step(line: str) -> float:
    """The step of a log line; infinity for a line that is not a complete entry (always dropped)."""
    try:
        entry = json.loads(line)
    except ValueError:
        return math.inf
    step = entry.get("step") if isinstance(entry, dict) else None
    return step if isinstance(step, int) else math.inf


def main(argv=None) -> None:
    args = parse_args(argv)
    with Stop() as stop:
        distributed = "WORLD_SIZE" in os.environ
        if distributed:
            dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
        run(args, stop, distributed)
        if distributed:
            dist.destroy_process_group()


def run(args, stop: Stop, distributed: bool) -> None:
    rank = dist.get_rank() if distributed else 0
    device = torch.device(args.device, int(os.environ.get("LOCAL_RANK", 0))) if args.device == "cuda" \
        else torch.device("cpu")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed + rank)
    state_path = args.out / "state.pt"
    state, source = read_inputs(args, state_path)
    args.out.mkdir(parents=True, exist_ok=True)

    images = load_images(args.data, args.patch_size)
    # crops are cut where the images are (on a GPU: no batch crosses the bus)
    sampler = CropSampler([i.to(device) for i in images], args.patch_size,
                          torch.Generator().manual_seed(args.seed + rank))
    if state:
        model = model_from_state(state, state_path)
    else:
        model = new_model(args, images, source)
    stop.armed = True
    model.to(device)
    entropy_params = [p for n, p in model.named_parameters() if n.startswith(("densities", "log_steps"))]
    transform_params = [p for n, p in model.named_parameters() if not n.startswith(("densities", "log_steps"))]
    opt = torch.optim.Adam([{"params": transform_params, "scale": 1.0},
                            {"params": entropy_params, "scale": 30.0}], lr=args.lr)
    step, fit = 0, {"iteration": 0}
    if state:
        try:
            opt.load_state_dict(state["optimizer"])
            sampler.g.set_state(state["rng"])
            torch.set_rng_state(state["torch_rng"])
            if device.type == "cuda" and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            step, fit = int(state["step"]), state.get("fit")
            args.init_from = args.init_from or state["args"].get("init_from")  # keep the run's history
        except Exception as e:
            raise SystemExit(f"error: {state_path} does not fit the model it holds ({first_line(e)})")
        if rank:  # the state holds rank 0's generator; the others draw their own crops again
            sampler.g.manual_seed(args.seed + rank + 1_000_003 * step)
            torch.manual_seed(args.seed + rank + 1_000_003 * step)
    else:
        choose_predictors(model, sampler)
    if rank == 0:
        trim_log(args.out / "log.jsonl", step)
    if fit is not None and not fit_densities(model, sampler, args, device, fit,
                                             lambda: stopping(bool(stop.requested), distributed, device),
                                             args.prefit_iterations):
        if rank == 0:
            save_run(state_path, model, opt, step, args, sampler, fit)
            print(f"{stop.requested} during the entropy fit: saved {state_path} at its iteration "
                  f"{fit['iteration']}; continue with --resume")
        return
    net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) if distributed else model

    log = open(args.out / "log.jsonl", "a") if rank == 0 else None
    sizes = model.config.sizes
    last_save = time.time()
    bar = tqdm(total=args.steps, initial=step, disable=rank != 0, dynamic_ncols=True)
    t0, steps_at_t0 = time.time(), step
    while step < args.steps and not stopping(bool(stop.requested), distributed, device):
        index = step % len(sizes)
        lmbda = sizes[index].lmbda
        for g in opt.param_groups:
            g["lr"] = learning_rate(args.lr, step, args.steps) * g["scale"]
        x = sampler.batch(args.batch_size).to(device)
        out = net(x, index, cycle=args.beta > 0)
        mse = (out["x_hat"] - x).square().mean((1, 2, 3))  # per crop
        if args.distortion == "mse":
            distortion = 255 ** 2 * mse
        else:
            distortion = MS_SSIM_SCALE * (1 - ms_ssim(out["x_hat"].clamp(0, 1), x, data_range=1.0,
                                                      weights=MS_SSIM_WEIGHTS, size_average=False))
        rd = lmbda * distortion + out["bpp"]
        weights = crop_weights(rd.detach()) if args.balanced else torch.ones_like(rd)
        rd = (rd * weights).sum() / weights.sum()
        distortion, bpp, mse = distortion.mean(), out["bpp"].mean(), mse.mean()  # what is logged
        cycle = out.get("cycle", torch.zeros((), device=device))
        loss = rd + args.beta * cycle + args.gamma * out["sparsity"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if rank != 0:
            continue
        psnr = -10 * math.log10(max(mse.item(), 1e-10))
        bar.update(1)
        bar.set_postfix(size=sizes[index].name, loss=f"{loss.item():.3f}", bpp=f"{bpp.item():.3f}",
                        psnr=f"{psnr:.2f}")
        if step % 50 == 0:
            rate = (step - steps_at_t0) / (time.time() - t0) * 3600
            log.write(json.dumps({"step": step, "size": sizes[index].name, "loss": loss.item(),
                                  "distortion": distortion.item(), "bpp_estimate": bpp.item(),
                                  "psnr": psnr, "cycle": cycle.item(), "sparsity": out["sparsity"].item(),
                                  "lr": opt.param_groups[0]["lr"], "steps_per_hour": rate}) + "\n")
            log.flush()
        if args.val_every and step % args.val_every == 0 and kodak_dir():
            validate(model, step, args, log, stop)
        if time.time() - last_save > args.save_minutes * 60:
            save_run(state_path, model, opt, step, args, sampler)
            last_save = time.time()
    if rank == 0:
        save_run(state_path, model, opt, step, args, sampler)
        bar.close()
        log.close()
        print((f"{stop.requested}: " if stop.requested else "") + f"saved {state_path} at step {step}"
              + ("; continue with --resume" if step < args.steps else ""))


def read_inputs(args, state_path: Path) -> tuple[dict | None, dict | None]:
    """The state to resume, or the --init-from weights of a fresh run: checked before anything is
    written or the images are loaded, so that bad input fails at once, with one line."""
    if args.resume:
        if not state_path.exists():
            raise SystemExit(f"error: --resume: {args.out} holds no state.pt to continue "
                             "(leave --resume out to start a run)")
        state = load_state(state_path)
        if "calibrated" in state:  # its tables' shapes fit its scales as they are: training moves them
            raise SystemExit(f"error: --resume: {args.out} is a calibrated run (train.calibrate): resume the "
                             "run it was calibrated from, or start a new one with --init-from")
        adopt_recipe(args, state["args"])
        print(f"resuming {args.out} at step {state['step']} of {args.steps}: lr {args.lr:g}, "
              f"batch {args.batch_size} x {args.patch_size}x{args.patch_size}")
        return state, None
    if state_path.exists():  # a fresh run would overwrite it at its first save
        raise SystemExit(f"error: {args.out} already holds a run: add --resume to continue it, "
                         "or choose another --out")
    if args.blocks < 0:
        raise SystemExit(f"error: --blocks must be 0 or more, not {args.blocks}")
    if args.prefit_iterations < 0:
        raise SystemExit(f"error: --prefit-iterations must be 0 or more, not {args.prefit_iterations}")
    unknown = [n for n in args.sizes.split(",") if n not in SIZES]
    if unknown:
        raise SystemExit(f"error: unknown code size {unknown[0]!r} (choose from {', '.join(SIZES)})")
    return None, init_source(args.init_from) if args.init_from else None


def init_source(path: Path) -> dict:
    """The weights --init-from names (another run's state.pt or a folder of checkpoints), read
    before the long set-up so that a bad path fails at once."""
    if path.is_dir():
        try:
            return nested_from_checkpoints(path).state_dict()
        except Exception as e:
            raise SystemExit(f"error: --init-from {path}: unreadable checkpoints ({first_line(e)})")
    if not path.exists():
        raise SystemExit(f"error: --init-from: no such file or folder: {path}")
    return load_state(path, keys=("model",))["model"]


def new_model(args, images: list[torch.Tensor], source: dict | None) -> CycleModel:
    """A fresh model: an orthogonal (PCA) start, then what fits of the --init-from weights."""
    sizes = [SIZES[n] for n in args.sizes.split(",")]
    model = CycleModel(ModelConfig(width=args.width, tied=not args.untied, kernel=args.kernel, blocks=args.blocks,
                                   sizes=sizes))
    model.init_orthogonal([i.float() / 255 for i in images[:64]], seed=args.seed)
    if source is not None:
        own = model.state_dict()
        source = {k: pad_kernel(v, own[k].shape[-1]) if k.startswith("down") and k in own else v
                  for k, v in source.items()}  # a block transform starts a lapped one
        # the entropy models' tensors too where their shapes still fit (a changed part is fitted
        # afresh by `fit_densities`); the predictors are chosen again from the data, and the
        # tables' shapes are Laplace until the run is calibrated (train.calibrate)
        reused = {k: v for k, v in source.items()
                  if not k.endswith((".predictor", ".shape_index")) and k in own and own[k].shape == v.shape}
        model.load_state_dict(reused, strict=False)
        print(f"initialised {len(reused)} tensors from {args.init_from}")
    return model


def stopping(requested: bool, distributed: bool, device) -> bool:
    """Whether to stop now; under DDP every rank stops at the same step or the others would hang."""
    if not distributed:
        return requested
    flag = torch.tensor([float(requested)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


@torch.no_grad()
def choose_predictors(model: CycleModel, sampler: CropSampler, crops: int = 64) -> None:
    """Fix each code size's per-channel predictors, then its channels' activity weights (which
    read the predicted symbols), from the initial code of a sample of crops."""
    x = sampler.batch(crops)
    for i, density in enumerate(model.densities):
        code = torch.round(model.encode(x, i)).cpu()
        density.predictor.copy_(entropy.choose_predictors(code))
        density.activity.copy_(entropy.activity_weights(entropy.residuals(code, density.predictor)))
        named = [entropy.PREDICTORS[k] for k in density.predictor.tolist()[1:]]
        print(f"{model.config.sizes[i].name}: predicted channels "
              + (", ".join(f"{c + 1} ({n})" for c, n in enumerate(named) if n != "none") or "none"))


def fit_densities(model: CycleModel, sampler: CropSampler, args, device, fit: dict, should_stop,
                  iterations: int = 300) -> bool:
    """Fit each entropy model to the initial code before training starts (encoder frozen, cheap).

    A fresh density is nearly flat, which makes the first thousands of steps pay for a badly
    estimated rate; this fits it in about a minute. `fit` holds the iteration to start from and the
    fit's optimiser state; when `should_stop()` says so, it is updated for the saved state and the
    fit returns False, so a resumed run finishes the fit exactly as an uninterrupted one would.
    """
    opt = torch.optim.Adam(model.densities.parameters(), lr=1e-2)
    if "optimizer" in fit:
        opt.load_state_dict(fit["optimizer"])
    total = iterations * len(model.config.sizes)
    for it in tqdm(range(fit["iteration"], total), initial=fit["iteration"], total=total,
                   desc="fitting entropy models"):
        if should_stop():
            fit.update(iteration=it, optimizer=opt.state_dict())
            return False
        index = it % len(model.config.sizes)
        with torch.no_grad():
            y = model.encode(sampler.batch(args.batch_size).to(device), index)
        noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        bits = -torch.log2(model.densities[index].likelihood(noisy, torch.round(y))).mean()
        opt.zero_grad(set_to_none=True)
        bits.backward()
        opt.step()
    return True


def validate(model: CycleModel, step: int, args, log, stop: Stop) -> None:
    """Real-file bpp and PSNR on a few Kodak images, for every code size (reporting only)."""
    from train.evaluate import measure_checkpoint  # the codec stack, not needed to train
    model.eval()
    cpu = model.to("cpu") if args.device == "cuda" else model
    for i, size in enumerate(cpu.config.sizes):
        if stop.requested:  # a signal: save and stop rather than finish the validation
            break
        r = measure_checkpoint(as_checkpoint(cpu, i), kodak_dir(), limit=args.val_images)
        tqdm.write(f"step {step} val {size.name}: {r['bpp']:.3f} bpp (real files), {r['psnr']:.2f} dB")
        log.write(json.dumps({"step": step, "val": size.name, "bpp": r["bpp"], "psnr": r["psnr"]}) + "\n")
    log.flush()
    model.to(args.device).train()


if __name__ == "__main__":
    main()
