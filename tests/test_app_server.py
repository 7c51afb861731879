"""The app as a server under strain: a broken upload is refused before the queue while a long
comparison runs, the queue says where a request stands, and the run folders of a killed process
are removed as the app starts again (and nothing else is)."""
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app_server import app_process, running_app
from conftest import EXAMPLES

LONG_CODECS = ["jpeg", "jpeg2000", "webp", "avif"]


RUNNING = ("PROCESSING", "ITERATING")  # /compare reports its steps as it goes


def wait_for(job, codes, timeout=120):
    deadline = time.time() + timeout
    while job.status().code.name not in codes:
        assert not job.done() and time.time() < deadline, (codes, job.status())
        time.sleep(0.1)


def test_broken_upload_is_refused_at_once_while_a_2k_comparison_runs(tmp_path):
    """A truncated PNG sent while a 2K comparison with four codecs runs (and another waits) is
    refused in under 2 s, with the reason and no server path; the waiting request is told its place
    in the queue and about how long it will wait (Gradio's own estimate, from the runs so far)."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import ValidationError

    photo = Image.open(EXAMPLES / "kodim23.png").convert("RGB")
    big = tmp_path / "2k.png"
    photo.resize((2048, 1365), Image.Resampling.LANCZOS).save(big, compress_level=1)
    small = tmp_path / "small.png"
    photo.crop((0, 0, 128, 96)).save(small)
    truncated = tmp_path / "truncated.png"
    data = (EXAMPLES / "kodim23.png").read_bytes()
    truncated.write_bytes(data[:len(data) // 2])

    with running_app() as url:
        first, second, third = (Client(url, verbose=False) for _ in range(3))
        # One run done, so that Gradio knows how long a run takes and can estimate the wait.
        first.predict(handle_file(str(small)), "tiny", ["jpeg"], api_name="/compare")
        running = first.submit(handle_file(str(big)), "medium", LONG_CODECS, api_name="/compare")
        wait_for(running, RUNNING)
        waiting = second.submit(handle_file(str(small)), "tiny", ["jpeg"], api_name="/compare")
        wait_for(waiting, ["IN_QUEUE"])

        start = time.perf_counter()
        with pytest.raises(ValidationError) as refused:
            third.predict(handle_file(str(truncated)), "tiny", ["jpeg"], api_name="/compare")
        seconds = time.perf_counter() - start
        message = str(refused.value)
        assert seconds < 2, f"refused after {seconds:.1f} s"
        assert "Could not read this file ('truncated.png') as an image" in message, message
        assert "/" not in message.replace("1 parameter(s)", ""), message
        assert running.status().code.name in RUNNING and not waiting.done()  # it did not wait its turn

        # The waiting request knows where it stands: first in line, and about how long it will wait.
        deadline = time.time() + 10
        while (waiting.status().eta is None or waiting.status().queue_size is None) and time.time() < deadline:
            time.sleep(0.2)
        status = waiting.status()
        print(f"truncated PNG refused in {seconds:.2f} s; the waiting request: {status}")
        assert status.code.name == "IN_QUEUE" and status.rank == 0 and status.queue_size == 1, status
        assert status.eta is not None and status.eta > 0, status
        # Other refusals that need no model are as quick, and each names the input at fault.
        for args, where, expected in [((small, "gigantic", ["jpeg"]), "code_size", "Unknown code size"),
                                      ((small, "tiny", ["jpeg", "gif"]), "codecs", "gif"),
                                      ((small, "tiny", ["jpeg"], "-5"), "target_kb", "more than 0 KB")]:
            start = time.perf_counter()
            with pytest.raises(ValidationError, match=expected) as refused:
                third.predict(handle_file(str(args[0])), *args[1:], api_name="/compare")
            assert time.perf_counter() - start < 2 and f"- {where}:" in str(refused.value), str(refused.value)


def run_folders(root: Path) -> list[Path]:
    from cycleapp.app.owners import PREFIX

    return [d for d in root.glob(PREFIX + "*") if d.is_dir()]


def test_a_killed_apps_run_folders_go_when_it_starts_again(tmp_path):
    """kill -9 leaves the app's run folders behind; the next start removes them within 10 s (from
    the restart, not from when it answers), and nothing else: not a live process's run folder, not
    a file or folder of another name in the same folder, not a run folder outside it."""
    from gradio_client import Client, handle_file

    from cycleapp.app import owners

    small = tmp_path / "small.png"
    Image.open(EXAMPLES / "kodim23.png").convert("RGB").crop((0, 0, 128, 96)).save(small)
    with tempfile.TemporaryDirectory(prefix="cyclecodec-test-gradio-") as gradio_dir:
        root = Path(gradio_dir) / "cyclecodec"
        with app_process(gradio_dir) as (proc, url):
            Client(url, verbose=False).predict(handle_file(str(small)), "tiny", ["jpeg"], api_name="/compare")
            (left,) = run_folders(root)
            assert any(left.iterdir())
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        assert left.is_dir()  # the killed process could not clean up
        # Beside it: a live process's run folder (this test holds its owner's lock), things of other
        # names, an old-style run folder (no owner) and a run folder outside the app's own folder.
        live = owners.new_owner()
        lock = owners.hold(root, live)
        kept = [root / f"{owners.PREFIX}{live}-abc", root / "notes", root / "run-notes.txt", root / "keep.txt",
                Path(gradio_dir) / f"{owners.PREFIX}0123456789abcdef-x"]
        for path in kept:
            path.mkdir() if "." not in path.name else path.write_text("keep")
        (kept[0] / "f.png").write_bytes(b"x")
        ownerless = root / "run-abc123"
        ownerless.mkdir()

        gone = {}

        def watch(start):
            while time.perf_counter() - start < 60 and (left.exists() or ownerless.exists()):
                time.sleep(0.05)
            gone["after"] = time.perf_counter() - start

        start = time.perf_counter()
        watcher = threading.Thread(target=watch, args=(start,))
        watcher.start()
        try:
            with app_process(gradio_dir) as (proc, url):
                watcher.join()
                print(f"left-over run folders gone {gone['after']:.1f} s after the restart")
                assert gone["after"] < 10, f"left-over folders still there {gone['after']:.1f} s after the restart"
                assert all(p.exists() for p in kept) and (kept[0] / "f.png").exists(), [p for p in kept if not p.exists()]
                # And the new process runs as before, its own folders alive to the next start.
                Client(url, verbose=False).predict(handle_file(str(small)), "tiny", ["jpeg"], api_name="/compare")
                (new,) = set(run_folders(root)) - {kept[0]}
                assert owners.remove_leftovers(root) == 0 and any(new.iterdir())
        finally:
            watcher.join()
            os.close(lock)


def test_leftover_removal_spares_live_owners(tmp_path):
    """Without a server: folders of an owner that holds its lock stay, of one that does not (or of
    none) go, with the dead owner's lock file; other names and symlinks are never touched."""
    from cycleapp.app import owners
    from cycleapp.app.outputs import RunFolders

    runs = RunFolders(tmp_path, cap=10_000)
    with runs.run(10) as mine:
        pass
    dead = owners.new_owner()
    os.close(owners.hold(tmp_path, dead))  # a process that took its lock, then died
    (tmp_path / f"{owners.PREFIX}{dead}-x").mkdir()
    (tmp_path / "run-old").mkdir()
    outside = tmp_path.parent / f"outside-{tmp_path.name}"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    (tmp_path / "run-link").symlink_to(outside, target_is_directory=True)
    (tmp_path / "other").mkdir()
    assert owners.remove_leftovers(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [mine.name, f".{owners.PREFIX}{runs.owner}.lock", "run-link", "other"])
    assert (outside / "precious").read_text() == "keep"
    assert owners.remove_leftovers(tmp_path / "missing") == 0


def test_out_root_is_in_gradios_upload_folder():
    """app.py finds Gradio's upload folder without importing Gradio (to clear leftovers first)."""
    from gradio.utils import get_upload_folder

    import app

    assert app.OUT_ROOT == Path(get_upload_folder()) / "cyclecodec"
