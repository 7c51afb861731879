"""`pip install .` and `pip install -e .` really install the package, its checkpoints and the
`cyclecodec` command, usable from anywhere.

The packages it depends on (torch & co.) are not downloaded again: the fresh venv sees the test's
own site-packages through a .pth file, and pip installs this project alone (--no-deps) with the
setuptools already there (--no-build-isolation). The project itself is installed for real, from a
copy of the source tree, so the checkout is not written to.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from conftest import EXAMPLES, REPO

SOURCE = ["pyproject.toml", "requirements.txt", "README.md", "cycleapp", "checkpoints"]


def run(cmd, cwd, check=True):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CYCLECODEC_CHECKPOINTS")}
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert not check or out.returncode == 0, (cmd, out.stdout[-2000:], out.stderr[-2000:])
    return out


@pytest.mark.parametrize("editable", [False, True], ids=["install", "editable"])
def test_pip_install_gives_the_package_the_checkpoints_and_the_command(tmp_path, editable):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCE:
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy)(REPO / name, src / name)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    bin_dir = env_dir / "bin"
    py = bin_dir / "python"
    site = run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).stdout.strip()
    with open(os.path.join(site, "_test_deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-build-isolation",
         *(["-e"] if editable else []), src], tmp_path)
    shutil.rmtree(src / "build", ignore_errors=True)

    work = tmp_path / "work"  # run from elsewhere: nothing of the checkout on the path
    work.mkdir()
    cyclecodec = bin_dir / "cyclecodec"
    assert "tiny" in run([cyclecodec, "sizes"], work).stdout
    run([cyclecodec, "encode", EXAMPLES / "kodim23.png", "x.cyc", "--code-size", "tiny"], work)
    run([cyclecodec, "decode", "x.cyc", "x.png"], work)
    table = run([cyclecodec, "compare", EXAMPLES / "kodim23.png", "--code-size", "tiny", "--codecs", "jpeg"], work)
    assert [line.split()[0] for line in table.stdout.splitlines()] == ["codec", "cycle", "jpeg"]
    bad = run([cyclecodec, "decode", "missing.cyc", "y.png"], work, check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    # where the package and its checkpoints are found, and the Pillow plug-in (one interpreter for both)
    plugin = run([py, "-c", "import cycleapp, cycleapp.core.checkpoint as c; print(cycleapp.__file__); "
                  "print(c.checkpoint_dir()); from PIL import Image; cycleapp.register(); "
                  "im = Image.open('x.cyc'); im.save('y.png'); print(im.format, im.size)"], work)
    where = plugin.stdout.split()
    assert where[0].startswith(str(src if editable else env_dir)), where
    assert len(list(Path(where[1]).glob("*.safetensors"))) >= 6, where  # five code sizes and their transform
    assert (Path(where[1]) / "transform.safetensors").is_file(), where
    assert where[2:] == ["CYC", "(768,", "512)"]
    assert (work / "y.png").read_bytes() and (work / "x.png").stat().st_size > 0
