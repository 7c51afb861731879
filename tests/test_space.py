"""The Space deploy (docs/deploy.md): the snapshot holds no binary outside LFS, no LFS pointer in
place of a file, and a valid Space card; and the check names each of those faults when it is there."""
import shutil
import subprocess

import space_files
from conftest import REPO


def test_the_snapshot_is_one_the_hub_takes():
    assert space_files.problems() == []
    paths = space_files.files()
    assert "checkpoints/transform.safetensors" in space_files.lfs_tracked(paths)
    assert ".venv" not in {p.split("/")[0] for p in paths}, "ignored folders are not sent"


def test_each_fault_is_named(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copy(REPO / ".gitattributes", tmp_path)
    (tmp_path / "app.py").write_text("")
    card = (REPO / "README.md").read_text().replace("colorFrom: indigo", "colorFrom: orange")
    (tmp_path / "README.md").write_text(card)
    (tmp_path / "weights.bin").write_bytes(b"\0" * 1_500_000)
    (tmp_path / "small.safetensors").write_bytes(space_files.LFS_POINTER + b"\noid sha256:0\nsize 1\n")
    found = space_files.problems(tmp_path)
    assert any(line.startswith("weights.bin: a binary file (1,500,000 bytes, over 1 MB)") for line in found)
    assert any(line.startswith("small.safetensors: an LFS pointer") for line in found)
    assert any("colorFrom" in line for line in found)
    assert len(found) == 3
    (tmp_path / "README.md").write_text("# no front matter\n")
    assert any("front matter" in line for line in space_files.problems(tmp_path))
