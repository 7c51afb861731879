"""Which process a run folder belongs to, and whether that process still runs.

The app writes each run's files into a folder of its own (cycleapp/app/outputs.py). A process that dies
(killed, or stopped without cleaning up) leaves its folders behind, and no later process shows them
again. So each process takes an owner token, names its folders `run-<owner>-...`, and holds an
`flock` on `.run-<owner>.lock` in the same root while it lives; the kernel releases the lock when
the process dies, however it dies (`kill -9` included). As the app starts, `remove_leftovers`
removes the run folders whose owner holds no lock. Nothing else is touched: not the folders of a
live process (two apps may share a root), nor anything that is not a run folder or an owner's
lock file.

Light on purpose (no gradio, no torch): the app calls it before those take seconds to import.
Where there is no flock (Windows), nothing is removed; the age and size caps still apply.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import time
from pathlib import Path

try:
    import fcntl
except ImportError:
    fcntl = None

PREFIX = "run-"
OWNED = re.compile(re.escape(PREFIX) + r"([0-9a-f]{16})-")  # a run folder's name: its owner's token
LOCK = "." + PREFIX + "{}.lock"  # an owner's lock file


def new_owner() -> str:
    return secrets.token_hex(8)


def hold(root: Path, owner: str) -> int | None:
    """Take `owner`'s lock in `root` and keep it for the life of the process (the descriptor is
    returned, to be left open); None where there is no flock."""
    if fcntl is None:
        return None
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK.format(owner)
    while True:
        fd = _lock(path, create=True)
        try:  # held, and still the file at that name: another process's remove_leftovers may have
            # taken the new, empty file for a dead owner's and unlinked it before we locked it
            if fd is not None and os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        if fd is not None:
            os.close(fd)
        time.sleep(0.01)


def remove_leftovers(root: Path) -> int:
    """Remove the run folders under `root` whose owner holds no lock (and those named before
    owners were), and the lock files of dead owners; returns how many folders went."""
    root = Path(root)
    if fcntl is None or not root.is_dir():
        return 0
    # Folders are listed before any owner is judged: a folder exists only once its owner holds its
    # lock, so a listed folder whose owner is then found dead is truly left over.
    folders = [d for d in root.glob(PREFIX + "*") if d.is_dir() and not d.is_symlink()]
    alive = {}
    for lock in root.glob(LOCK.format("*")):
        alive[lock.name[len("." + PREFIX):-len(".lock")]] = _alive(lock)
    removed = 0
    for d in folders:
        owner = OWNED.match(d.name)
        if not (owner and alive.get(owner.group(1))):
            shutil.rmtree(d, ignore_errors=True)
            removed += 1
    return removed


def _lock(path: Path, create: bool) -> int | None:
    """A descriptor holding an exclusive flock on `path`; None if another process holds it, or if
    the file is missing and not to be created."""
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
        return None


def _alive(path: Path) -> bool:
    """Whether the owner of this lock file still holds it. If not, the file goes (unlinked while
    locked, so that no process takes it for its own meanwhile)."""
    fd = _lock(path, create=False)
    if fd is None:
        return path.exists()
    try:
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)
    return False
