"""Start `python app.py` on a free port for the tests, and stop it afterwards."""
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(timeout: float = 120, repo: Path = REPO):
    """The app on a free port, with a Gradio folder of its own (uploads, cache, run folders): another
    app on the same machine, which shares /tmp/gradio by default, cannot touch its files. `repo`:
    the checkout whose app.py runs (another one, e.g. an earlier version, for a before/after timing)."""
    with tempfile.TemporaryDirectory(prefix="cyclecodec-test-gradio-") as gradio_dir:
        with app_process(gradio_dir, timeout, repo) as (_, url):
            yield url


@contextmanager
def app_process(gradio_dir: str, timeout: float = 120, repo: Path = REPO):
    """`python app.py` on a free port with `gradio_dir` as its Gradio folder (which the caller owns
    and removes), once it answers: yields (the process, its URL); stopped afterwards if it still runs."""
    port = free_port()
    repo = Path(repo)
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=gradio_dir, PYTHONPATH=str(repo))
    log = open(REPO / "tests" / f".app-{port}.log", "w+")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"app did not start:\n{log.read()[-3000:]}")
                time.sleep(0.5)
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        os.unlink(log.name)
