"""Train the cycle model: `python -m train.fit --out runs/main` (resumable with --resume).

Every code size is trained in one run, one size per step in turn (a nested code: every size shares
the transform); the loss is train/loss.py's. Read from `run` down: the set-up (a new model, or the
state to resume), the entropy models' pre-fit, then the loop, one `train_step` per step; the pieces
they use follow. Ctrl-C or SIGTERM saves the state (checksummed, atomically) and stops; --resume
continues exactly. Bad input stops the command with one `error:` line (train/errors.py).
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
from tqdm import tqdm

from cycleapp.core import entropy
from cycleapp.core.layers import pad_kernel
from cycleapp.core.model import CodeSize, CycleModel, ModelConfig
from train import lineage
from train.data import CropSampler, default_train_dir, kodak_dir, load_images
from train.errors import TrainError, command, first_line
from train.export import as_checkpoint, nested_from_checkpoints
from train.loss import Terms, loss
from train.state import load_state, model_from_state, save_state

# The shipped code sizes: (name, code channels, lambda). Smaller codes for lower rates.
SIZES = {
    "tiny": CodeSize("tiny", 64, 0.0006),
    "small": CodeSize("small", 96, 0.0015),
    "medium": CodeSize("medium", 160, 0.004),
    "large": CodeSize("large", 224, 0.01),
    "huge": CodeSize("huge", 320, 0.025),
}
# What a run is, as opposed to where it runs (device, threads, data, saves): a resumed run keeps it.
RECIPE = ("sizes", "steps", "batch_size", "patch_size", "lr", "seed", "width", "kernel", "blocks", "untied",
          "beta", "gamma", "distortion", "balanced", "val_every", "val_images", "prefit_iterations")


def parse_args(argv=None) -> argparse.Namespace:
    """The options, parsed once, and which of them the command line gave (`args.given`): a resumed
    run takes the others from the run it continues (`adopt_recipe`). So every option's default is
    applied after parsing, from `defaults`, rather than by argparse, which would hide what was given."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], argument_default=argparse.SUPPRESS)
    defaults = {}

    def option(name: str, default, **kwargs) -> None:
        defaults[name[2:].replace("-", "_")] = default
        p.add_argument(name, **kwargs)

    option("--sizes", ",".join(SIZES), help="comma-separated code sizes to train")
    option("--steps", 100_000, type=int, help="total steps (a resumed run continues to it)")
    option("--batch-size", 8, type=int)
    option("--patch-size", 128, type=int)
    option("--lr", 1e-4, type=float, help="transform learning rate (entropy model and steps: 30x)")
    option("--data", default_train_dir(), type=Path)
    option("--device", "cpu", choices=["cpu", "cuda"])
    option("--threads", torch.get_num_threads(), type=int)
    option("--seed", 0, type=int)
    option("--out", Path("runs/main"), type=Path)
    option("--resume", False, action="store_true", help="continue from OUT/state.pt")
    option("--init-from", None, type=Path,
           help="start the transform, quantisation steps and entropy models (where they still fit) "
                "from another run's state.pt "
                "or from a folder of checkpoints")
    option("--width", 320, type=int, help="channels of the widest code")
    option("--kernel", 8, type=int, choices=[4, 8],
           help="down-sampling kernel: 4 = block transform, 8 = lapped (overlapping)")
    option("--blocks", 2, type=int,
           help="residual blocks at the code's resolution (blocks beyond --init-from's start as the identity)")
    option("--untied", False, action="store_true", help="ablation: decoder with its own weights")
    option("--beta", 0.1, type=float, help="cycle-consistency weight (0: no cycle pass)")
    option("--gamma", 1e-3, type=float, help="L1 sparsity weight on the code")
    option("--distortion", "mse", choices=["mse", "ms-ssim"])
    option("--balanced", False, action="store_true",
           help="weigh each crop's rate-distortion loss by its inverse (train/loss.py, crop_weights)")
    option("--val-every", 1000, type=int, help="steps between Kodak validations")
    option("--val-images", 4, type=int)
    option("--save-minutes", 5.0, type=float)
    option("--prefit-iterations", 300, type=int,
           help="iterations per code size of the entropy models' fit before training "
                "(fit_densities; the tests shorten it to save time, 0 skips it)")
    given = vars(p.parse_args(argv))
    return argparse.Namespace(**{**defaults, **given}, given=list(given))


def adopt_recipe(args, recorded: dict) -> None:
    """A resumed run goes on as the run it resumes: each option of RECIPE that the command line
    leaves out takes the run's recorded value, not the default (a resume without --lr once went on
    at ten times its run's learning rate). Options given, --steps the most common, still win."""
    for key in RECIPE:
        if key not in args.given and key in recorded:
            setattr(args, key, recorded[key])


def learning_rate(base: float, step: int, total: int) -> float:
    """Short warm-up, constant, then a cosine decay over the last 20 % of the run."""
    warm = min(1.0, (step + 1) / 200)
    tail = max(0.0, (step - 0.8 * total) / (0.2 * total))
    return base * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * tail)))


@command
def main(argv=None) -> None:
    args = parse_args(argv)
    with Stop() as stop:
        distributed = "WORLD_SIZE" in os.environ
        if distributed:
            dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
        run(args, stop, distributed)
        if distributed:
            dist.destroy_process_group()


def run(args, stop: "Stop", distributed: bool) -> None:
    # --- set-up: the inputs checked, the photos, the model, the optimiser, and where the run stands
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
    model = model_from_state(state, state_path) if state else new_model(args, images, source)
    stop.armed = True
    model.to(device)
    opt = optimizer(model, args.lr)
    step, fit = 0, {"iteration": 0}
    if state:
        step, fit = restore(state, state_path, opt, sampler, device)
        args.init_from = args.init_from or state["args"].get("init_from")  # keep the run's history
        if rank:  # the state holds rank 0's generator; the others draw their own crops again
            sampler.g.manual_seed(args.seed + rank + 1_000_003 * step)
            torch.manual_seed(args.seed + rank + 1_000_003 * step)
        # where the weights came from and the steps done on each device (train/lineage.py); None in
        # a state saved before they were recorded
        history, recorded = state.get("lineage"), state.get("hardware")
    else:
        choose_predictors(model, sampler)
        history, recorded = (source["lineage"] if source else []), None  # []: from the orthogonal start
    start, hardware = step, lineage.hardware_name(device, dist.get_world_size() if distributed else 1)

    def save(fit: dict | None = None) -> None:
        save_run(state_path, model, opt, step, args, sampler, fit, history,
                 lineage.hardware_steps(recorded, start, step, hardware))

    if rank == 0:
        trim_log(args.out / "log.jsonl", step)

    # --- the entropy models' pre-fit (a fresh run, or one stopped inside it)
    if fit is not None and not fit_densities(model, sampler, args, device, fit,
                                             lambda: stopping(bool(stop.requested), distributed, device),
                                             args.prefit_iterations):
        if rank == 0:
            save(fit)
            print(f"{stop.requested} during the entropy fit: saved {state_path} at its iteration "
                  f"{fit['iteration']}; continue with --resume")
        return

    # --- the loop: one code size per step, in turn
    net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True) if distributed else model
    log = open(args.out / "log.jsonl", "a") if rank == 0 else None
    sizes = model.config.sizes
    last_save = time.time()
    bar = tqdm(total=args.steps, initial=step, disable=rank != 0, dynamic_ncols=True)
    t0, steps_at_t0 = time.time(), step
    while step < args.steps and not stopping(bool(stop.requested), distributed, device):
        index = step % len(sizes)
        for g in opt.param_groups:
            g["lr"] = learning_rate(args.lr, step, args.steps) * g["scale"]
        terms = train_step(net, model, opt, sampler.batch(args.batch_size).to(device), index, args)
        step += 1
        if rank != 0:
            continue
        show(bar, terms, sizes[index].name)
        if step % 50 == 0:
            rate = (step - steps_at_t0) / (time.time() - t0) * 3600
            log_step(log, step, sizes[index].name, terms, opt.param_groups[0]["lr"], rate)
        if args.val_every and step % args.val_every == 0 and kodak_dir():
            validate(model, step, args, log, stop)
        if time.time() - last_save > args.save_minutes * 60:
            save()
            last_save = time.time()
    if rank == 0:
        save()
        bar.close()
        log.close()
        print((f"{stop.requested}: " if stop.requested else "") + f"saved {state_path} at step {step}"
              + ("; continue with --resume" if step < args.steps else ""))


def train_step(net, model: CycleModel, opt, x: torch.Tensor, index: int, args) -> Terms:
    """One step at code size `index` on the crops `x`: the loss, its gradients (clipped to norm 1),
    the update. `net` is the model, or its DDP wrapper that averages the gradients of all processes."""
    out = net(x, index, cycle=args.beta > 0)
    terms = loss(out, x, model.config.sizes[index].lmbda, beta=args.beta, gamma=args.gamma,
                 distortion=args.distortion, balanced=args.balanced)
    opt.zero_grad(set_to_none=True)
    terms.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return terms


def psnr(terms: Terms) -> float:
    return -10 * math.log10(max(terms.mse.item(), 1e-10))


def show(bar, terms: Terms, size: str) -> None:
    """The progress bar after a step."""
    bar.update(1)
    bar.set_postfix(size=size, loss=f"{terms.loss.item():.3f}", bpp=f"{terms.bpp.item():.3f}",
                    psnr=f"{psnr(terms):.2f}")


def log_step(log, step: int, size: str, terms: Terms, lr: float, steps_per_hour: float) -> None:
    """One line of log.jsonl: every term of the loss (the batch's means), the learning rate, the speed."""
    log.write(json.dumps({"step": step, "size": size, "loss": terms.loss.item(),
                          "distortion": terms.distortion.item(), "bpp_estimate": terms.bpp.item(),
                          "psnr": psnr(terms), "cycle": terms.cycle.item(), "sparsity": terms.sparsity.item(),
                          "lr": lr, "steps_per_hour": steps_per_hour}) + "\n")
    log.flush()


def optimizer(model: CycleModel, lr: float) -> torch.optim.Adam:
    """Adam over two groups: the transform at `lr`, the entropy models and steps at 30 times it
    (`scale`, which the loop multiplies the schedule's rate by)."""
    entropy_params = [p for n, p in model.named_parameters() if n.startswith(("densities", "log_steps"))]
    transform_params = [p for n, p in model.named_parameters() if not n.startswith(("densities", "log_steps"))]
    return torch.optim.Adam([{"params": transform_params, "scale": 1.0},
                             {"params": entropy_params, "scale": 30.0}], lr=lr)


def restore(state: dict, state_path: Path, opt, sampler: CropSampler, device) -> tuple[int, dict | None]:
    """Put a resumed run's optimiser and random state back; its step and unfinished entropy fit."""
    try:
        opt.load_state_dict(state["optimizer"])
        sampler.g.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        return int(state["step"]), state.get("fit")
    except Exception as e:
        raise TrainError(f"{state_path} does not fit the model it holds ({first_line(e)})")


def save_run(path: Path, model, opt, step: int, args, sampler: CropSampler, fit: dict | None,
             history: list | None, hardware: dict) -> None:
    """The run's state: weights, optimiser, step, random state (and an unfinished entropy fit), and
    its lineage: the stages before it and its steps on each device (train/lineage.py)."""
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
             "config": model.config.to_dict(), "args": {k: str(v) if isinstance(v, Path) else v
                                                       for k, v in vars(args).items() if k != "given"},
             "rng": sampler.g.get_state(), "torch_rng": torch.get_rng_state(), "hardware": hardware}
    if history is not None:  # None: a run resumed from a state of before the lineage was recorded
        state["lineage"] = history
    if args.device == "cuda":  # the training noise is drawn on the GPU, from its own generator
        state["cuda_rng"] = torch.cuda.get_rng_state(next(model.parameters()).device)  # this rank's GPU
    if fit is not None:
        state["fit"] = fit
    save_state(state, path)


def read_inputs(args, state_path: Path) -> tuple[dict | None, dict | None]:
    """The state to resume, or the --init-from source of a fresh run (`init_source`): checked before
    anything is written or the images are loaded, so that bad input fails at once (TrainError)."""
    if args.resume:
        if not state_path.exists():
            raise TrainError(f"--resume: {args.out} holds no state.pt to continue "
                             "(leave --resume out to start a run)")
        state = load_state(state_path)
        if "calibrated" in state:  # its tables' shapes fit its scales as they are: training moves them
            raise TrainError(f"--resume: {args.out} is a calibrated run (train.calibrate): resume the "
                             "run it was calibrated from, or start a new one with --init-from")
        adopt_recipe(args, state["args"])
        print(f"resuming {args.out} at step {state['step']} of {args.steps}: lr {args.lr:g}, "
              f"batch {args.batch_size} x {args.patch_size}x{args.patch_size}")
        return state, None
    if state_path.exists():  # a fresh run would overwrite it at its first save
        raise TrainError(f"{args.out} already holds a run: add --resume to continue it, "
                         "or choose another --out")
    if args.blocks < 0:
        raise TrainError(f"--blocks must be 0 or more, not {args.blocks}")
    if args.prefit_iterations < 0:
        raise TrainError(f"--prefit-iterations must be 0 or more, not {args.prefit_iterations}")
    unknown = [n for n in args.sizes.split(",") if n not in SIZES]
    if unknown:
        raise TrainError(f"unknown code size {unknown[0]!r} (choose from {', '.join(SIZES)})")
    return None, init_source(args.init_from) if args.init_from else None


def init_source(path: Path) -> dict:
    """What --init-from names (another run's state.pt or a folder of checkpoints): its weights
    ("model") and their lineage, read before the long set-up so that a bad path fails at once."""
    if path.is_dir():
        try:
            return {"model": nested_from_checkpoints(path).state_dict(), "lineage": lineage.of_checkpoints(path)}
        except Exception as e:
            raise TrainError(f"--init-from {path}: unreadable checkpoints ({first_line(e)})")
    if not path.exists():
        raise TrainError(f"--init-from: no such file or folder: {path}")
    state = load_state(path, keys=("model",))
    return {"model": state["model"], "lineage": lineage.of_run(state, path.parent)}


def new_model(args, images: list[torch.Tensor], source: dict | None) -> CycleModel:
    """A fresh model: an orthogonal (PCA) start, then what fits of the --init-from weights."""
    sizes = [SIZES[n] for n in args.sizes.split(",")]
    model = CycleModel(ModelConfig(width=args.width, tied=not args.untied, kernel=args.kernel, blocks=args.blocks,
                                   sizes=sizes))
    model.init_orthogonal([i.float() / 255 for i in images[:64]], seed=args.seed)
    if source is not None:
        own = model.state_dict()
        source = {k: pad_kernel(v, own[k].shape[-1]) if k.startswith("down") and k in own else v
                  for k, v in source["model"].items()}  # a block transform starts a lapped one
        # the entropy models' tensors too where their shapes still fit (a changed part is fitted
        # afresh by `fit_densities`); the predictors are chosen again from the data, and the
        # tables' shapes are Laplace until the run is calibrated (train.calibrate)
        reused = {k: v for k, v in source.items()
                  if not k.endswith((".predictor", ".shape_index")) and k in own and own[k].shape == v.shape}
        model.load_state_dict(reused, strict=False)
        print(f"initialised {len(reused)} tensors from {args.init_from}")
    return model


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


def stopping(requested: bool, distributed: bool, device) -> bool:
    """Whether to stop now; under DDP every rank stops at the same step or the others would hang."""
    if not distributed:
        return requested
    flag = torch.tensor([float(requested)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


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
