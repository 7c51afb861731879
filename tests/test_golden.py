"""Files last: every .cyc that a release wrote decodes with this one to the very same pixels.

tests/golden/golden.json lists files written by earlier releases (tests/golden/vN/), each with the
SHA-256 of the pixels that release decoded it to. A release adds its own files; none is ever
removed or rewritten (docs/release-policy.md).

The learned transform is float32 arithmetic: a machine whose convolutions sum in another order (another
processor's kernels) can make a base pixel 1 level off where a value lies within about 1e-4 of a half.
A file with no enhancement layer then decodes to pixels 1 level off in such rare places (the golden
ones, small, had none on the machines tried); a file whose layer sits on a learned base is refused in
one line (its layer's seal binds the base's exact pixels), never decoded to other pixels (docs/format.md,
"Tiles"): on an AVX2 machine (AMD EPYC) 5 of the 29 such golden files, written on the machines of
earlier sessions, were refused. So here a golden file decodes to its release's pixels, or, only if it
is such a file, is refused so (a warning names it); and of every format and layer kind at least one
golden file decodes, so a decoder that broke a kind's files fails here on any machine.
"""
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import cycleapp
from cycleapp.core.bitstream import OLDER_RELEASES, READABLE, BitstreamError, CycFile

GOLDEN = Path(__file__).parent / "golden"
ENTRIES = json.loads((GOLDEN / "golden.json").read_text())
BASE_DIFFERS = "a base this machine's transform makes differently"


def decode_golden(entry) -> np.ndarray | None:
    """The file's pixels, checked against its release's; None where this machine's transform makes
    its learned base otherwise (the file refused, as the format says it must be)."""
    data = (GOLDEN / entry["file"]).read_bytes()
    assert data[3] == entry["format"] and len(data) == entry["bytes"]
    cyc = CycFile.from_bytes(data)
    try:
        pixels = cycleapp.decode(data)
    except BitstreamError as e:
        assert cyc.has_code and cyc.layer_kind and BASE_DIFFERS in str(e), (entry["file"], str(e))
        warnings.warn(f"{entry['file']}: refused on this machine, whose float32 transform makes its learned "
                      f"base otherwise than the machine that wrote it did ({e})")
        return None
    assert list(pixels.shape) == entry["shape"]
    assert hashlib.sha256(pixels.tobytes()).hexdigest() == entry["pixels_sha256"], entry["file"]
    return pixels


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_every_golden_file_decodes_to_the_pixels_its_release_gave(entry):
    decode_golden(entry)


def test_golden_files_of_every_layer_kind_decode_on_this_machine():
    """Of each (format, layer kind), at least one golden file decodes to its release's pixels here:
    the smallest have few base values near a half, so every machine makes their bases alike."""
    kinds: dict[tuple[int, int], list] = {}
    for entry in ENTRIES:
        cyc = CycFile.from_bytes((GOLDEN / entry["file"]).read_bytes())
        kinds.setdefault((cyc.version, cyc.layer_kind), []).append(entry)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        failed = [kind for kind, entries in kinds.items()
                  if all(decode_golden(e) is None for e in sorted(entries, key=lambda e: e["bytes"]))]
    assert not failed, f"no golden file of these (format, layer kind) decodes here: {failed}"


def test_a_file_with_an_enhancement_layer_decodes_alike_on_any_thread_count():
    """Its base is made on one thread (a convolution's float sums can depend on the thread count)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(6)
    try:
        for entry in (e for e in ENTRIES if e["format"] >= 9):
            decode_golden(entry)
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
