"""The C allocator's settings for a program that codes large images (called once, at its start).

The encoders work in numpy on whole images: a 2K photo's transform-domain layer is ten million
coefficients, and every step of its rate control makes dozens of temporary arrays of 40 to 80 MB.
glibc's malloc hands each block above 32 MB to the kernel on free and asks for it again on the next
one, and the kernel then zero-fills the new block a page at a time: on a 2K photo at 2 bpp by
`--target-bytes`, 10.5 of 27 CPU seconds went to the kernel. Kept in the heap instead (served from it
up to 1 GiB a block, freed space returned only beyond 256 MiB), the same work took 2.3 s of kernel
time, for about 8 % more peak memory (1.75 GB to 1.88 GB). One arena for all threads, so that the
worker threads' blocks are kept the same way (a thread's own arena would map any block above 64 MB).

Process-wide, so a library import never changes it: the command line and the measurements call
`reuse_freed_memory` at their start; a program using the Python API may do the same. Not the app:
freed memory then stays with the process (the heap gives back only from its top, and a small block in
use above freed ones pins them), and over 200 comparisons in a row (`tests/soak_app.py`) the app's
memory grew by a third, even with malloc_trim after each, where glibc's own policy keeps it level."""
from __future__ import annotations

import ctypes
import ctypes.util

# mallopt's parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
SERVED_FROM_HEAP = 1 << 30  # blocks up to this come from the heap, not from a mapping of their own
KEPT_FREE = 256 << 20  # free space at the heap's top kept for the next blocks


def reuse_freed_memory() -> bool:
    """Keep freed blocks for reuse (see the module's docstring); False where the C library is not
    glibc or refused a setting (each is tried; what it refused stays as it was)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = [mallopt(param, value) == 1 for param, value in
               ((M_MMAP_THRESHOLD, SERVED_FROM_HEAP), (M_TRIM_THRESHOLD, KEPT_FREE), (M_ARENA_MAX, 1))]
    return all(applied)
