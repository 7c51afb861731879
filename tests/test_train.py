"""Training: a few real steps, an exact resume, an export the codec can use."""
import subprocess
import sys

import torch

from conftest import EXAMPLES, REPO, run_cli

COMMON = ["--data", str(EXAMPLES), "--sizes", "tiny", "--batch-size", "2", "--patch-size", "64",
          "--val-every", "0", "--threads", "1", "--seed", "3"]


def fit(out, steps, *extra):
    cmd = [sys.executable, "-m", "train.fit", "--out", str(out), "--steps", str(steps), *COMMON, *extra]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return torch.load(out / "state.pt", weights_only=True)


def test_resume_continues_exactly(tmp_path):
    straight = fit(tmp_path / "a", 4)
    fit(tmp_path / "b", 2)
    resumed = fit(tmp_path / "b", 4, "--resume")
    assert straight["step"] == resumed["step"] == 4
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key


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
    torch.save(first, tmp_path / "ddp" / "state.pt")
    resumed = torchrun(4, "--resume")
    assert resumed["step"] == 4
    assert torch.allclose(resumed["model"][mark], first["model"][mark], atol=0.01)  # not a fresh start
    assert all(int(s["step"]) == 4 for s in resumed["optimizer"]["state"].values())  # Adam went on too
    assert any(not torch.equal(first["model"][k], resumed["model"][k]) for k in first["model"])


def test_export_gives_a_working_checkpoint(tmp_path, monkeypatch):
    fit(tmp_path / "run", 2)
    out = subprocess.run([sys.executable, "-m", "train.export", str(tmp_path / "run"), "--out", str(tmp_path / "ck")],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "ck" / "tiny.safetensors").stat().st_size < 5_000_000
    monkeypatch.setenv("CYCLECODEC_CHECKPOINTS", str(tmp_path / "ck"))
    enc = run_cli("encode", EXAMPLES / "kodim23.png", tmp_path / "x.cyc", "--code-size", "tiny")
    assert enc.returncode == 0, enc.stderr
    dec = run_cli("decode", tmp_path / "x.cyc", tmp_path / "x.png")
    assert dec.returncode == 0, dec.stderr


def test_packed_run_resumes_from_the_jpeg_copy(tmp_path):
    """train.pack: every image as a JPEG, the Adam moments in bfloat16, and fit resumes from both."""
    fit(tmp_path / "run", 2)
    cmd = [sys.executable, "-m", "train.pack", str(tmp_path / "pack"), "--data", str(EXAMPLES),
           "--state", str(tmp_path / "run" / "state.pt")]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list((tmp_path / "pack" / "data").glob("*.jpg"))) == len(list(EXAMPLES.glob("*.png")))
    packed = torch.load(tmp_path / "pack" / "state.pt", weights_only=True)
    assert all(m["exp_avg_sq"].dtype == torch.bfloat16 for m in packed["optimizer"]["state"].values())
    (tmp_path / "gpu").mkdir()
    (tmp_path / "pack" / "state.pt").rename(tmp_path / "gpu" / "state.pt")
    resumed = fit(tmp_path / "gpu", 3, "--resume", "--data", str(tmp_path / "pack" / "data"))
    assert resumed["step"] == 3
    assert all(m["exp_avg_sq"].dtype == torch.float32 for m in resumed["optimizer"]["state"].values())


def test_evaluate_refuses_a_bad_rdoq_weight(tmp_path):
    """One error line, non-zero exit, no results file, for a negative or NaN weight."""
    for weight in ["-1", "nan"]:
        out = tmp_path / "r.json"
        cmd = [sys.executable, "-m", "train.evaluate", "--images", str(EXAMPLES), "--codecs", "cycle",
               "--rdoq-weight", weight, "--out", str(out)]
        result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode != 0 and not out.exists()
        assert result.stderr.strip().splitlines()[-1].startswith("error: --rdoq-weight must be")
        assert "Traceback" not in result.stderr


def test_headroom_bounds_hold_on_the_images_that_chose_the_tables(ckpt, photo):
    """In-sample, each cell's best table costs no more than the shipped one, and a finer split by
    block class costs no more than the contexts alone (side bits aside): the counting is consistent."""
    from cycleapp import codec
    from train.headroom import headroom

    r = headroom(ckpt, [photo], [photo], block=4)
    file_bpp = 8 * len(codec.encode(ckpt, photo)) / (photo.shape[0] * photo.shape[1])
    assert 0.75 * file_bpp < r["shipped"] < file_bpp  # the AC channels: most of the file, the DC and header aside
    assert 0 < r["refit"] <= r["shipped"] + 1e-12
    assert r["classes"] - r["side"] <= r["refit"] + 1e-12
    assert r["side"] > 0


def test_headroom_and_pack_refuse_bad_input_with_one_line(tmp_path):
    """A bad option or a missing input: one error line, non-zero exit, nothing written."""
    cases = [["train.headroom", "--limit", "0"], ["train.headroom", "--sizes", "nope"],
             ["train.headroom", "--images", str(tmp_path / "none")],
             ["train.pack", str(tmp_path / "pack"), "--state", str(tmp_path / "none.pt")],
             ["train.pack", str(tmp_path / "pack"), "--data", str(tmp_path / "none")]]
    for args in cases:
        result = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode != 0, args
        assert result.stderr.strip().splitlines()[-1].startswith("error: "), args
        assert "Traceback" not in result.stderr, args
    assert not (tmp_path / "pack").exists()
