"""An image's block rows a strip at a time, two strips at once: how the transform layers' encoders
and decoders run over a whole image.

Why strips: on the machines this runs on, touching freshly allocated memory costs more than the
arithmetic done in it (a 2K photo's inverse transform, made on whole-image temporaries, was 10x
slower than on STRIP block rows at a time, whose temporaries stay in the processor's cache and are
reused by the allocator). Why two at once: numpy releases the interpreter's lock in its loops, so
two threads keep two cores busy (a 2K photo's lossy encode at a setting 1.2 to 1.6 times faster
than on one thread, its decode 1.1 to 1.25 times, two runs each of a scratch script). Each strip writes only its own rows, and BLAS gives the same numbers on any
number of its own threads (it splits a product's rows, not its sums), so the results are the same in
any order and on any number of threads (`tests/test_strips.py`). The lossless layer uses the same
two workers for other rows: its exact products a few thousand rows at a time, and its predictor
classes' fits (a 2K photo's lossless encode 4.2 s to 3.6 s, three runs each of a scratch script).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, TypeVar

from threadpoolctl import ThreadpoolController

STRIP = 8  # block rows at a time (a multiple of the largest transform's 4 block rows)
WORKERS = min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)

T = TypeVar("T")


def strips(rows: int, size: int = STRIP) -> list[slice]:
    """The block rows of a grid (or any rows), `size` at a time."""
    return [slice(top, min(rows, top + size)) for top in range(0, rows, size)]


def each(rows: int, work: Callable[[slice], T], size: int = STRIP) -> list[T]:
    """[work(s) for s in strips(rows, size)], up to WORKERS strips at a time, BLAS on one thread meanwhile
    (its own threads would compete with the strips' for the same cores). One after another within a
    strip's work (a strip's rows are few), and for the strips no thread could start for (at the
    interpreter's shutdown). An exception in any strip is raised here, once every strip is done."""
    parts = strips(rows, size)
    if WORKERS < 2 or len(parts) < 2 or getattr(_in_strip, "yes", False):
        return [work(s) for s in parts]

    def run(s):
        _in_strip.yes = True
        return work(s)
    futures = []
    with _one_blas_thread(), ThreadPoolExecutor(WORKERS) as pool:
        try:
            for s in parts:
                futures.append(pool.submit(run, s))
        except RuntimeError:  # (no new thread at the interpreter's shutdown)
            pass
        rest = [work(s) for s in parts[len(futures):]]
    return [f.result() for f in futures] + rest


_in_strip = threading.local()  # set in the threads that work on a strip
_blas = {"users": 0, "limits": None, "controller": None}
_blas_lock = threading.Lock()


@contextmanager
def _one_blas_thread():
    """BLAS limited to one thread while any caller of `each` runs (the limit is the process's: one
    caller's end must not lift it under another's strips). Another module's limit set and lifted
    meanwhile (`predicted_layer.walk`'s) may lift it early, which changes only the speed."""
    with _blas_lock:
        if _blas["users"] == 0:
            _blas["controller"] = _blas["controller"] or ThreadpoolController()
            _blas["limits"] = _blas["controller"].limit(limits=1, user_api="blas")
        _blas["users"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas["users"] -= 1
            if _blas["users"] == 0:
                _blas["limits"].restore_original_limits()
