"""Files last: every .cyc that a release wrote decodes with this one to the very same pixels.

tests/golden/golden.json lists files written by earlier releases (tests/golden/vN/), each with the
SHA-256 of the pixels that release decoded it to. A release adds its own files; none is ever
removed or rewritten (docs/release-policy.md).
"""
import hashlib
import json
from pathlib import Path

import pytest

import cycleapp
from cycleapp.core.bitstream import OLDER_RELEASES, READABLE, BitstreamError, CycFile

GOLDEN = Path(__file__).parent / "golden"
ENTRIES = json.loads((GOLDEN / "golden.json").read_text())


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_every_golden_file_decodes_to_the_pixels_its_release_gave(entry):
    data = (GOLDEN / entry["file"]).read_bytes()
    assert data[3] == entry["format"] and len(data) == entry["bytes"]
    pixels = cycleapp.decode(data)
    assert list(pixels.shape) == entry["shape"]
    assert hashlib.sha256(pixels.tobytes()).hexdigest() == entry["pixels_sha256"]


def test_a_file_with_an_enhancement_layer_decodes_alike_on_any_thread_count():
    """Its base is made on one thread (a convolution's float sums can depend on the thread count)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(6)
    try:
        for entry in (e for e in ENTRIES if e["format"] >= 9):
            pixels = cycleapp.decode((GOLDEN / entry["file"]).read_bytes())
            assert hashlib.sha256(pixels.tobytes()).hexdigest() == entry["pixels_sha256"], entry["file"]
    finally:
        torch.set_num_threads(before)


def test_every_readable_format_has_golden_files():
    assert {e["format"] for e in ENTRIES} == set(READABLE)


def test_a_file_of_an_early_format_names_the_commit_that_reads_it():
    data = bytearray((GOLDEN / ENTRIES[0]["file"]).read_bytes())
    for version, commit in OLDER_RELEASES.items():
        data[3] = version
        with pytest.raises(BitstreamError, match=f"commit {commit}.*git checkout {commit}"):
            CycFile.from_bytes(bytes(data))
    data[3] = max(READABLE) + 1
    with pytest.raises(BitstreamError, match="newer CycleCodec"):
        CycFile.from_bytes(bytes(data))


def test_version_is_the_same_in_the_package_and_pyproject():
    text = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert f'version = "{cycleapp.__version__}"' in text
    changelog = (Path(__file__).parent.parent / "CHANGELOG.md").read_text()
    assert f"## {cycleapp.__version__}" in changelog
