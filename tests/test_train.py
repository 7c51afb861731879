"""Training: a few real steps, an exact resume, an export the codec can use; a run stopped by a
signal or killed, and a damaged or foreign state file.

The commands run in this process (their `main`), which spares starting an interpreter and
importing torch for each; the tests of what only a separate process shows (a signal, torchrun,
the exit status and stderr of a refusal) start one. Runs shorten the entropy models' pre-fit
(--prefit-iterations) but where the test is about that phase."""
import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import pytest
import torch

from conftest import EXAMPLES, REPO
from train import fit as train_fit
from train import lineage
from train.loss import crop_weights, loss
from train.state import save_state

COMMON = ["--data", str(EXAMPLES), "--sizes", "tiny", "--batch-size", "2", "--patch-size", "64",
          "--val-every", "0", "--threads", "1", "--seed", "3", "--prefit-iterations", "20"]
SHIPPED_PREFIT = ["--prefit-iterations", "300"]  # the default: time for a signal to land inside the fit


def arguments(out, steps, *extra):
    return ["--out", str(out), "--steps", str(steps), *COMMON, *map(str, extra)]


def command(out, steps, *extra):
    return [sys.executable, "-m", "train.fit", *arguments(out, steps, *extra)]


@contextlib.contextmanager
def torch_state_kept():
    """The commands set torch's thread count and seed for the whole process (--threads, --seed):
    both are put back after, so that no later test runs slower or draws other numbers for it."""
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(rng)


def in_process(main, argv) -> None:
    """A command run in this process, as `python -m` would run it."""
    with torch_state_kept():
        main([str(a) for a in argv])


def fit(out, steps, *extra):
    """A training run (train.fit in this process); its saved state."""
    in_process(train_fit.main, arguments(out, steps, *extra))
    return torch.load(out / "state.pt", weights_only=True)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """A run of 4 steps without a stop (read only: the tests compare with it and copy it)."""
    out = tmp_path_factory.mktemp("straight")
    fit(out, 4)
    return out


def assert_same_model(a, b):
    assert a["step"] == b["step"]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_resume_continues_exactly(tmp_path, straight):
    fit(tmp_path / "b", 2)
    resumed = fit(tmp_path / "b", 4, "--resume")
    assert_same_model(torch.load(straight / "state.pt", weights_only=True), resumed)
    assert resumed["hardware"] == {lineage.hardware_name(torch.device("cpu")): 4}  # 2 steps, then 2 more
    assert resumed["lineage"] == []  # from the orthogonal start


def test_options_are_parsed_once_and_the_given_ones_known():
    """parse_args: the defaults, and which options the command line gave (a resume keeps the
    others from its run), even one given at its default value."""
    args = train_fit.parse_args(["--lr", "1e-4", "--balanced", "--out", "runs/x"])
    assert sorted(args.given) == ["balanced", "lr", "out"]
    assert (args.lr, args.balanced, args.steps, args.beta, args.init_from) == (1e-4, True, 100_000, 0.1, None)
    args.steps = 7  # as a recorded run's steps would be, if the command line had not given them
    train_fit.adopt_recipe(args, {"lr": 3e-5, "steps": 9, "gamma": 0.5})
    assert (args.lr, args.steps, args.gamma) == (1e-4, 9, 0.5)


def test_loss_is_the_documented_sum():
    """train.loss: lambda * 255^2 * MSE + bpp + beta * cycle + gamma * sparsity (docs/model.md), the
    rate-distortion part a plain mean over the crops, or weighed by crop_weights with --balanced."""
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    out = {"x_hat": x + 0.01 * torch.arange(3.0).view(3, 1, 1, 1), "bpp": torch.tensor([0.5, 1.0, 2.0]),
           "cycle": torch.tensor(0.25), "sparsity": torch.tensor(4.0)}
    rd = 0.01 * 255 ** 2 * torch.tensor([0.0, 1e-4, 4e-4]) + out["bpp"]
    terms = loss(out, x, 0.01, beta=0.1, gamma=0.001)
    assert terms.loss.item() == pytest.approx(rd.mean().item() + 0.1 * 0.25 + 0.001 * 4.0, rel=1e-5)
    assert terms.mse.item() == pytest.approx(5e-4 / 3, rel=1e-4) and terms.bpp.item() == pytest.approx(3.5 / 3)
    weights = crop_weights(rd)
    balanced = loss(out, x, 0.01, beta=0.1, gamma=0.001, balanced=True)
    assert balanced.loss.item() == pytest.approx(((rd * weights).sum() / weights.sum()).item() + 0.025 + 0.004,
                                                 rel=1e-5)
    del out["cycle"]  # --beta 0: no cycle pass, no cycle term
    assert loss(out, x, 0.01, beta=0.1, gamma=0.001).cycle.item() == 0



def test_resume_goes_on_with_the_runs_own_settings_unless_told_otherwise(tmp_path):
    """Options a resume leaves out are the run's (its learning rate, not the default's); given ones win."""
    out = tmp_path / "run"
    fit(out, 2, "--lr", "3e-5", "--gamma", "0.01", "--balanced")
    resumed = fit(out, 3, "--resume")
    assert (resumed["args"]["lr"], resumed["args"]["gamma"], resumed["args"]["balanced"],
            resumed["args"]["steps"]) == (3e-5, 0.01, True, 3)
    used = resumed["optimizer"]["param_groups"][0]["lr"]
    assert used == pytest.approx(train_fit.learning_rate(3e-5, 2, 3))  # the last step's, at the run's rate


def test_balanced_crops_weigh_each_crops_relative_gain_the_same():
    """Weighted by crop_weights, a crop's share of the gradient is its loss's relative change: a
    smooth crop's loss ten times smaller counts ten times more, down to the floor."""
    losses = torch.tensor([1.0, 0.1, 0.0])
    weights = crop_weights(losses)
    assert weights[1] / weights[0] == pytest.approx(10)
    assert weights[2] == pytest.approx(1 / (0.1 * losses.mean()))  # a blank crop: floored, finite

def start(out, steps, *extra):
    return subprocess.Popen(command(out, steps, *extra), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def wait_for(proc, pattern, timeout=300):
    """Read the run's stderr (tqdm's bars) until `pattern` shows, so that a signal lands in that phase."""
    seen, deadline = "", time.time() + timeout
    while not re.search(pattern, seen):
        assert time.time() < deadline and proc.poll() is None, seen[-2000:]
        if select.select([proc.stderr], [], [], 1)[0]:
            seen += os.read(proc.stderr.fileno(), 65536).decode(errors="replace")
    return seen


def test_ctrl_c_saves_the_run_and_resume_continues(tmp_path):
    out = tmp_path / "run"
    proc = start(out, 100_000)
    seen = wait_for(proc, r"\| *[1-9]\d*/100000 \[")  # training, past its first step
    assert re.search(r"fitting entropy models: 100%\|[^|]*\| 20/20 ", seen)  # --prefit-iterations 20
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0 and b"Traceback" not in stderr, stderr[-2000:]
    saved = torch.load(out / "state.pt", weights_only=True)
    assert 0 < saved["step"] < 100_000 and "fit" not in saved
    assert f"SIGINT: saved {out / 'state.pt'} at step {saved['step']}" in stdout.decode()
    assert not list(out.glob("*.tmp"))
    resumed = fit(out, saved["step"] + 2, "--resume")
    assert resumed["step"] == saved["step"] + 2
    assert all(int(s["step"]) == saved["step"] + 2 for s in resumed["optimizer"]["state"].values())


def test_sigterm_during_the_entropy_fit_saves_it_and_resume_is_exact(tmp_path):
    """The fit stops where it is (its iteration and optimiser saved) and the resumed run ends with
    the very weights of a run that was never stopped."""
    out = tmp_path / "run"
    proc = start(out, 4, *SHIPPED_PREFIT)
    wait_for(proc, r"fitting entropy models: *\d+%\|[^|]*\| *[1-9]\d*/300")
    proc.terminate()
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0 and b"Traceback" not in stderr, stderr[-2000:]
    saved = torch.load(out / "state.pt", weights_only=True)
    assert saved["step"] == 0 and 0 < saved["fit"]["iteration"] < 300
    assert b"SIGTERM during the entropy fit" in stdout
    resumed = fit(out, 4, "--resume", *SHIPPED_PREFIT)
    assert "fit" not in resumed
    assert_same_model(fit(tmp_path / "straight", 4, *SHIPPED_PREFIT), resumed)


def test_trim_log_keeps_the_lines_up_to_the_step_a_run_resumes_from(tmp_path):
    """A run killed (kill -9) after its last save had logged steps past it, the last line torn:
    the log keeps its entries up to the saved step (a validation at that step too) and loses the
    later ones and every line that is not a complete entry, replaced in one move (no .tmp left)."""
    log = tmp_path / "log.jsonl"
    kept = [{"step": 50, "size": "tiny", "loss": 1.5}, {"step": 50, "val": "tiny", "bpp": 0.6, "psnr": 29.0}]
    lost = [{"step": 100, "size": "tiny", "loss": 123.0}, {"step": 100, "val": "tiny", "bpp": 0.5, "psnr": 30.0}]
    log.write_text("".join(json.dumps(e) + "\n" for e in kept + lost) + '[50]\n{"step": "50"}\n{"step": 1')
    train_fit.trim_log(log, 50)
    assert [json.loads(line) for line in log.read_text().splitlines()] == kept
    assert os.listdir(tmp_path) == ["log.jsonl"]
    train_fit.trim_log(log, 100)  # nothing past the step: as it was
    assert [json.loads(line) for line in log.read_text().splitlines()] == kept
    train_fit.trim_log(tmp_path / "none.jsonl", 5)  # a run without a log yet
    assert os.listdir(tmp_path) == ["log.jsonl"]


def test_resume_after_kill_logs_each_step_once(tmp_path, straight):
    """A resumed run trims its log at the step it starts from (the lines a killed run logged
    after its last save, the torn one too), does those steps again and logs each of them once."""
    out, light = tmp_path / "run", ["--batch-size", "1", "--beta", "0"]  # the log is what counts here
    shutil.copytree(straight, out)
    log = out / "log.jsonl"
    val4 = {"step": 4, "val": "tiny", "bpp": 0.6, "psnr": 29.0}  # a validation before the save: kept
    lost = [{"step": 50, "size": "tiny", "loss": 123.0}, {"step": 50, "val": "tiny", "bpp": 0.5, "psnr": 30.0}]
    log.write_text("".join(json.dumps(e) + "\n" for e in [val4, *lost]) + '{"step": 5')
    assert fit(out, 50, "--resume", *light)["step"] == 50
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["step"] for e in entries] == [4, 50] and entries[0] == val4
    assert "val" not in entries[1] and entries[1]["loss"] != 123.0  # the resumed run's own line


def test_torchrun_trains_and_resumes_with_two_processes(tmp_path):
    """DDP on CPU (gloo): the second process's gradients reach the update (rank 0 alone, which
    draws the crops of a one-process run, would give that run's weights), and a second torchrun
    continues from the saved state (a mark put in the state survives) to the requested step."""
    def torchrun(steps, *extra):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "train.fit", "--out", str(tmp_path / "ddp"), "--steps", str(steps), *COMMON, *extra]
        result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        return torch.load(tmp_path / "ddp" / "state.pt", weights_only=True)

    first = torchrun(2)
    alone = fit(tmp_path / "one", 2)
    assert first["step"] == alone["step"] == 2
    assert any(not torch.equal(first["model"][k], alone["model"][k]) for k in first["model"])

    mark = next(k for k in first["model"] if "log_steps" in k)
    first["model"][mark] = first["model"][mark] + 0.25
    save_state(first, tmp_path / "ddp" / "state.pt")  # with the new contents' checksum
    resumed = torchrun(4, "--resume")
    assert resumed["step"] == 4
    assert torch.allclose(resumed["model"][mark], first["model"][mark], atol=0.01)  # not a fresh start
    assert all(int(s["step"]) == 4 for s in resumed["optimizer"]["state"].values())  # Adam went on too
    assert any(not torch.equal(first["model"][k], resumed["model"][k]) for k in first["model"])


def refused(argv, main=train_fit.main) -> str:
    """A command run in this process (train.fit by default) must stop with one `error:` line
    (what `python -m` prints, with exit status 1: test_resume_without_a_state_... shows it)."""
    with torch_state_kept(), pytest.raises(SystemExit) as stopped:
        main([str(a) for a in argv])
    message = str(stopped.value.code)
    assert message.startswith("error: ") and "\n" not in message, message
    return message


def test_resume_without_a_state_refuses_with_one_line(tmp_path):
    result = subprocess.run(command(tmp_path / "none", 4, "--resume"), cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: --resume: {tmp_path / 'none'} holds no state.pt to continue (leave --resume out to start a run)"]
    assert not (tmp_path / "none").exists()


def test_damaged_or_foreign_state_refuses_with_one_line(tmp_path, straight):
    """--resume and --init-from: an empty, truncated, one-byte-damaged or foreign file gives one
    `error:` line and leaves the run's files as they were (nothing saved over them)."""
    good = (straight / "state.pt").read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF  # inside a tensor: torch.load alone reads it without a word
    with zipfile.ZipFile(straight / "state.pt") as archive:
        name = next(i.filename for i in archive.infolist() if i.filename.endswith("/data/0")).encode()
        attributes = good.index(name, archive.start_dir) - 8  # in its central directory record
    flagged = bytearray(good)
    flagged[attributes] ^= 0x10  # the "directory" bit: every CRC holds, but torch reads garbage
    torch.save({"weights": torch.zeros(3)}, tmp_path / "archive.pt")
    torch.save({"model": {}, "where": tmp_path}, tmp_path / "object.pt")  # a Path: no weights-only load
    other = torch.load(straight / "state.pt", weights_only=True)
    other["config"]["width"] = 32
    save_state(other, tmp_path / "other-model.pt")  # a valid checksum: refused for not fitting
    cases = {"empty": b"", "truncated": good[: len(good) // 2], "flipped byte": bytes(flipped),
             "flagged entry": bytes(flagged),
             "an image": (EXAMPLES / "kodim23.png").read_bytes(),
             "another archive": (tmp_path / "archive.pt").read_bytes(),
             "an object": (tmp_path / "object.pt").read_bytes(),
             "another model": (tmp_path / "other-model.pt").read_bytes()}
    for name, data in cases.items():
        run = tmp_path / name
        run.mkdir()
        (run / "state.pt").write_bytes(data)
        message = refused(arguments(run, 6, "--resume"))
        assert "damaged" in message or name not in ("flipped byte", "flagged entry"), message
        assert "does not fit" in message or name != "another model", message
        assert (run / "state.pt").read_bytes() == data and sorted(os.listdir(run)) == ["state.pt"], name
        if name != "another model":  # --init-from takes what fits of another model, by design
            refused(arguments(tmp_path / f"{name}-init", 6, "--init-from", run / "state.pt"))
            assert not (tmp_path / f"{name}-init" / "state.pt").exists(), name


def test_fresh_run_refuses_bad_input_with_one_line(tmp_path, straight):
    """A missing --init-from, an unknown code size, a negative number of blocks or of pre-fit
    iterations, or a folder that
    already holds a run (a fresh run would overwrite it): one `error:` line, nothing written."""
    assert "no such file or folder" in refused(arguments(tmp_path / "a", 4, "--init-from", tmp_path / "none.pt"))
    assert "unknown code size" in refused(arguments(tmp_path / "a", 4) + ["--sizes", "tiny,nope"])
    assert "--blocks must be 0 or more" in refused(arguments(tmp_path / "a", 4) + ["--blocks", "-1"])
    assert "--prefit-iterations must be 0 or more" in refused(arguments(tmp_path / "a", 4, "--prefit-iterations", -1))
    assert not (tmp_path / "a").exists()
    shutil.copytree(straight, tmp_path / "b")
    assert "already holds a run" in refused(arguments(tmp_path / "b", 8))
    assert (tmp_path / "b" / "state.pt").read_bytes() == (straight / "state.pt").read_bytes()


def test_state_saved_before_checksums_still_resumes(tmp_path, straight, capsys):
    """The runs under way when the checksum came (their states have none) go on, with a note."""
    old = torch.load(straight / "state.pt", weights_only=True)
    del old["sha256"]
    (tmp_path / "run").mkdir()
    torch.save(old, tmp_path / "run" / "state.pt")
    in_process(train_fit.main, arguments(tmp_path / "run", 5, "--resume"))
    assert "holds no checksum" in capsys.readouterr().err
    assert torch.load(tmp_path / "run" / "state.pt", weights_only=True)["step"] == 5


def test_export_gives_a_working_checkpoint(tmp_path, monkeypatch, straight, capsys):
    """train.export writes the checkpoint files (measured on the Kodak folder: here one photo), and
    the command line encodes and decodes with them (the file names the exported checkpoint)."""
    from safetensors.torch import load_file

    from cycleapp.__main__ import main as cli
    from cycleapp.core.bitstream import CycFile
    from cycleapp.core.checkpoint import load_checkpoint
    from train import export

    kodak = tmp_path / "kodak"
    kodak.mkdir()
    shutil.copy(EXAMPLES / "kodim23.png", kodak)
    monkeypatch.setattr(export, "kodak_dir", lambda: kodak)
    in_process(export.main, [straight, "--out", tmp_path / "ck"])
    files = {p.name: p.stat().st_size for p in (tmp_path / "ck").iterdir()}
    transform = files.pop("transform.safetensors")  # the code sizes share it: stored once
    assert transform > 1_000_000 and sorted(files) == ["tiny.json", "tiny.safetensors"]
    assert files["tiny.safetensors"] < 500_000  # its steps and entropy model: the 256 AC tables are shared
    assert "tables.ac" in load_file(tmp_path / "ck" / "transform.safetensors")
    assert "tables.ac" not in load_file(tmp_path / "ck" / "tiny.safetensors")
    meta = json.loads((tmp_path / "ck" / "tiny.json").read_text())
    assert meta["kodak"]["images"] == 1 and meta["kodak"]["bpp"] > 0
    assert not [s for s in strings(meta) if s.startswith("/")]  # no machine's absolute path
    assert meta["train_args"]["data"] == meta["train_data"] == os.path.relpath(EXAMPLES, REPO)
    assert meta["lineage"] == [{"run": os.path.relpath(straight, REPO), "tool": "train.fit", "steps": 4,
                                "batch": "2 x 64x64", "data": os.path.relpath(EXAMPLES, REPO),
                                "hardware": {lineage.hardware_name(torch.device("cpu")): 4}}]
    assert meta["total_steps"] == 4
    # a run started from these checkpoints carries their lineage forward
    assert train_fit.init_source(tmp_path / "ck")["lineage"] == meta["lineage"]
    monkeypatch.setenv("CYCLECODEC_CHECKPOINTS", str(tmp_path / "ck"))
    assert cli(["encode", str(EXAMPLES / "kodim23.png"), str(tmp_path / "x.cyc"), "--code-size", "tiny"]) == 0
    exported = load_checkpoint(tmp_path / "ck" / "tiny.safetensors").id
    assert CycFile.from_bytes((tmp_path / "x.cyc").read_bytes()).checkpoint_id == exported
    assert cli(["decode", str(tmp_path / "x.cyc"), str(tmp_path / "x.png")]) == 0, capsys.readouterr().err
    assert (tmp_path / "x.png").stat().st_size > 0


def strings(value):
    """Every string in a JSON value (keys too)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def test_shipped_checkpoints_say_where_their_weights_came_from():
    """Every code size's JSON: relative paths only, and the same lineage, each stage with its
    training steps, data and hardware, adding up to the steps docs/training.md gives."""
    metas = [json.loads(p.read_text()) for p in sorted((REPO / "checkpoints").glob("*.json"))]
    assert len(metas) == 5
    for meta in metas:
        assert not [s for s in strings(meta) if s.startswith("/")]
        assert meta["lineage"] == metas[0]["lineage"]
        assert all({"steps", "data", "hardware"} <= set(stage) for stage in meta["lineage"])
        assert meta["total_steps"] == lineage.total_steps(meta["lineage"]) == 204_677


def test_calibration_fits_the_tables_to_the_real_codes_and_nothing_else(tmp_path, straight):
    """train.calibrate: a new run whose entropy models alone differ from the trained run's, whose
    tables code the photos they were fitted on in fewer bytes (a 4-step run's Laplace tables are
    far from its real codes), with some tables of another shape than the Laplace; it cannot be
    resumed (training would move its scales away from its shapes), nor written over."""
    from cycleapp.core import codec
    from cycleapp.core.entropy import LAPLACE
    from cycleapp.imageio import load_rgb
    from train.export import as_checkpoint, load_run

    from train import calibrate

    args = [straight, "--out", tmp_path / "cal", "--data", EXAMPLES, "--threads", "1"]
    in_process(calibrate.main, args)
    (trained, _), (calibrated, state) = load_run(straight), load_run(tmp_path / "cal")
    before, after = trained.state_dict(), calibrated.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("densities.0.") for k in changed)
    assert (after["densities.0.shape_index"] != LAPLACE).any() and state["calibrated"]["images"] > 0
    photos = [load_rgb(p) for p in sorted(EXAMPLES.glob("*.png"))]
    size = lambda model: sum(len(codec.encode(as_checkpoint(model, 0), rgb)) for rgb in photos)
    assert size(calibrated) < 0.97 * size(trained)
    assert state["lineage"] == [lineage.stage(load_run(straight)[1], straight)]  # the run it calibrated
    assert lineage.stage(state, tmp_path / "cal")["tool"] == "train.calibrate"  # then the calibration
    assert "is a calibrated run" in refused(arguments(tmp_path / "cal", 6, "--resume"))
    assert "already holds a run" in refused(args, calibrate.main)
    assert load_run(tmp_path / "cal")[1]["step"] == state["step"]


def test_a_state_saved_before_the_tables_had_shapes_loads_with_laplace_tables(tmp_path, straight):
    """Runs saved before format 7 hold no table shapes: they load (to resume, export or calibrate)
    with every table a Laplace, as they were; runs of stage 17 hold them under the buffer's earlier
    name, `shape`, and load with them."""
    from cycleapp.core.entropy import LAPLACE
    from train.export import load_run

    old = torch.load(straight / "state.pt", weights_only=True)
    del old["sha256"]
    shapes = [k for k in old["model"] if k.endswith(".shape_index")]
    assert shapes
    for key in shapes:
        old["model"][key] = torch.zeros_like(old["model"][key])  # not the default: the test can fail
    (tmp_path / "changed").mkdir()
    save_state(old, tmp_path / "changed" / "state.pt")
    assert (load_run(tmp_path / "changed")[0].densities[0].shape_index == 0).all()  # stored shapes win
    earlier = dict(old, model={k.replace(".shape_index", ".shape"): v for k, v in old["model"].items()})
    (tmp_path / "earlier").mkdir()
    save_state(earlier, tmp_path / "earlier" / "state.pt")
    assert (load_run(tmp_path / "earlier")[0].densities[0].shape_index == 0).all()
    for key in shapes:
        del old["model"][key]
    (tmp_path / "old").mkdir()
    save_state(old, tmp_path / "old" / "state.pt")
    assert (load_run(tmp_path / "old")[0].densities[0].shape_index == LAPLACE).all()


def test_calibration_counts_each_photos_symbols_under_its_moved_tables(ckpt, photo, monkeypatch):
    """What train.calibrate minimises is what the encoder's tables cost: under the tables as they
    are, a photo's counted bits after the DC are its ideal bits with the moves the encoder chooses
    for it (train.diagnose); without the prior, the tables it picks cost less (they are the best of
    all for this photo, a fit on one photo)."""
    from cycleapp.core.codec import quantized_code
    from train import calibrate
    from train.calibrate import RealCodes, best_tables
    from train.diagnose import ideal_bits

    monkeypatch.setattr(calibrate, "PRIOR_SYMBOLS", 0)
    q = quantized_code(ckpt, photo).to(torch.int64)
    codes = RealCodes(ckpt.tables)
    codes.add(q)
    assert ckpt.tables.adaptation(q[0].numpy()).any()  # the photo moves its tables
    shipped = torch.from_numpy(ckpt.tables.base_index)
    _, _, ac = ideal_bits(ckpt.tables, q[0])
    assert codes.symbols == ac.numel()
    assert abs(codes.bits(shipped) * codes.symbols - float(ac.sum())) < 1e-6 * float(ac.sum())
    assert codes.bits(best_tables(codes, shipped)) < codes.bits(shipped)


def test_packed_run_resumes_from_the_jpeg_copy(tmp_path, straight):
    """train.pack: every image as a JPEG, the Adam moments in bfloat16, and fit resumes from both."""
    from train import pack

    in_process(pack.main, [tmp_path / "pack", "--data", EXAMPLES, "--state", straight / "state.pt"])
    assert len(list((tmp_path / "pack" / "data").glob("*.jpg"))) == len(list(EXAMPLES.glob("*.png")))
    packed = torch.load(tmp_path / "pack" / "state.pt", weights_only=True)
    assert all(m["exp_avg_sq"].dtype == torch.bfloat16 for m in packed["optimizer"]["state"].values())
    (tmp_path / "gpu").mkdir()
    (tmp_path / "pack" / "state.pt").rename(tmp_path / "gpu" / "state.pt")
    resumed = fit(tmp_path / "gpu", 5, "--resume", "--data", str(tmp_path / "pack" / "data"))
    assert resumed["step"] == 5
    assert all(m["exp_avg_sq"].dtype == torch.float32 for m in resumed["optimizer"]["state"].values())


def test_evaluate_refuses_a_bad_rdoq_weight(tmp_path):
    """One error line, non-zero exit, no results file, for a negative or NaN weight."""
    from train import evaluate

    for weight in ["-1", "nan"]:
        out = tmp_path / "r.json"
        args = ["--images", EXAMPLES, "--codecs", "cycle", "--rdoq-weight", weight, "--out", out]
        assert refused(args, evaluate.main).startswith("error: --rdoq-weight must be")
        assert not out.exists()


def test_headroom_bounds_hold_on_the_images_that_chose_the_tables(ckpt, photo):
    """In-sample, each cell's best table costs no more than the shipped one, and a finer split by
    block class costs no more than the contexts alone (side bits aside): the counting is consistent."""
    from cycleapp.core import codec
    from train.headroom import headroom

    r = headroom(ckpt, [photo], [photo], block=4)
    file_bpp = 8 * len(codec.encode(ckpt, photo)) / (photo.shape[0] * photo.shape[1])
    assert 0.75 * file_bpp < r["shipped"] < file_bpp  # the AC channels: most of the file, the DC and header aside
    assert 0 < r["refit"] <= r["shipped"] + 1e-12
    assert r["classes"] - r["side"] <= r["refit"] + 1e-12
    assert r["side"] > 0


def test_headroom_and_pack_refuse_bad_input_with_one_line(tmp_path):
    """A bad option or a missing input: one error line, non-zero exit, nothing written."""
    from train import headroom, pack

    cases = [(headroom, ["--limit", "0"]), (headroom, ["--sizes", "nope"]),
             (headroom, ["--images", tmp_path / "none"]),
             (pack, [tmp_path / "pack", "--state", tmp_path / "none.pt"]),
             (pack, [tmp_path / "pack", "--data", tmp_path / "none"])]
    for module, args in cases:
        refused(args, module.main)
    assert not (tmp_path / "pack").exists()
