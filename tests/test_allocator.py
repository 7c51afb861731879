"""The allocator's settings (`cycleapp.core.allocator`) take effect: a large block freed and asked
for again is served from memory the process already has, not faulted in from the kernel anew."""
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = """
import resource, sys
import numpy as np
from cycleapp.core.allocator import reuse_freed_memory
print(reuse_freed_memory() if sys.argv[1] == "on" else "off")
np.ones(100 << 17)  # 100 MiB, written (so faulted in), then freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(100 << 17)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(setting: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROGRAM, setting], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout.split()
    return out[0], int(out[1])


GLIBC = platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt (a Linux with another C library keeps its own policy)")
def test_a_freed_block_is_reused_without_faulting_it_in_again():
    applied, faults = page_faults("on")
    assert applied == "True"
    assert faults < 50, faults  # 100 MiB is 25,600 pages (or 50 huge ones): none of them new
    assert page_faults("off")[1] > faults  # (glibc's own policy: the block mapped and faulted in again)

