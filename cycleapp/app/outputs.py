"""The app's output: a folder per run (and what a run writes there), bounded in age and in total size.

Each /compare run writes its files (the .cyc file, the PNG files that the page and the API serve)
into a folder of its own. Left alone they would fill the disk: a 768x512 photo with JPEG and JPEG
2000 writes about 2.5 MB, a 4-megapixel one 26 MB (53 MB for noise, 51 MB with all six codecs).
Before each run, `RunFolders.run` makes room for the most it can write:

- a folder older than `max_age` goes (Gradio's `delete_cache` removes the served files at that age
  too, so the two agree on how long a result lives);
- while the folders and the new run could pass the cap, the oldest folder goes first: those that
  no open page shows any more, then those that one does (a page's latest run, until its tab
  closes), so a page left open gives way to a new visitor rather than refuse them;
- never a folder younger than `min_age`, nor one whose run is still writing: its run has just
  answered and the page or API client is fetching its files (a 4 MP photo's run is 26 MB: 20 s
  at 10 Mbit/s);
- if that is not enough room, the run is refused (`Busy`, a message the user sees) rather than
  the cap passed. With one comparison at a time this needs over `cap` bytes written within
  `min_age` seconds, which is far more than the app writes on a CPU.

The folders of a process that died (killed, or stopped without cleaning up) are removed when the
app starts again: each process names its folders after itself and holds a lock while it lives
(cycleapp/app/owners.py).
"""
from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cycleapp.app import inspector
from cycleapp.app import owners
from cycleapp.app import ui
from cycleapp.app.owners import PREFIX


class Busy(Exception):
    """No room for a run's files without deleting results that are being fetched right now."""


def folder_bytes(folder: Path) -> int:
    total = 0
    for f in folder.rglob("*"):
        try:
            total += f.lstat().st_size if f.is_file() else 0
        except OSError:  # deleted meanwhile (e.g. by Gradio's delete_cache)
            pass
    return total


class RunFolders:
    """The run folders under `root`, at most `cap` bytes in all (see the module docstring)."""

    def __init__(self, root: Path, cap: int, min_age: float = 60, max_age: float = 3600,
                 sessions: int = 512):
        self.root, self.cap, self.min_age, self.max_age = Path(root), cap, min_age, max_age
        self._lock = threading.Lock()
        self._writing: set[str] = set()  # folders of runs in progress
        self._shown: OrderedDict[str, str] = OrderedDict()  # browser session -> its latest run's folder
        self._sessions = sessions
        self.owner = owners.new_owner()  # this process's folders are `run-<owner>-...`
        self._owner_lock: int | None = None  # the descriptor holding its lock, once taken

    def usage(self) -> int:
        """Bytes under the root's run folders now."""
        return sum(folder_bytes(d) for d in self.root.glob(PREFIX + "*"))

    @contextmanager
    def run(self, need: int, session: str | None = None) -> Iterator[Path]:
        """A new, empty folder for a run that writes at most `need` bytes; deleted again if the run
        fails, and shown as `session`'s latest run if it succeeds. Raises Busy if there is no room.
        The session's previous run is no longer shown from now (the page clears it as a run starts)."""
        with self._lock:
            self._shown.pop(session, None)
            self._make_room(need)
            self._claim()
            folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{self.owner}-", dir=self.root))
            self._writing.add(folder.name)
        try:
            yield folder
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            with self._lock:
                self._writing.discard(folder.name)
        if session:
            with self._lock:
                self._shown[session] = folder.name
                self._shown.move_to_end(session)
                while len(self._shown) > self._sessions:
                    self._shown.popitem(last=False)

    def closed(self, session: str | None) -> None:
        """The session's page has closed: its latest run is no longer shown."""
        with self._lock:
            self._shown.pop(session, None)

    def _claim(self) -> None:
        """Hold this process's lock (once; under self._lock): from then on its folders are alive."""
        if self._owner_lock is None:
            self._owner_lock = owners.hold(self.root, self.owner)

    def _make_room(self, need: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        now = time.time()
        folders = []  # (shown, modified, name, bytes)
        shown = set(self._shown.values())
        for d in self.root.glob(PREFIX + "*"):
            try:
                modified = d.stat().st_mtime  # a folder's time changes as its run adds files
            except OSError:
                continue
            if d.name in self._writing:
                folders.append((True, now, d.name, folder_bytes(d)))
            elif now - modified > self.max_age:
                shutil.rmtree(d, ignore_errors=True)
            else:
                folders.append((d.name in shown, modified, d.name, folder_bytes(d)))
        total = sum(f[3] for f in folders)
        victims = []
        for _, modified, name, size in sorted(folders):  # those not shown first, then the oldest
            if total + need <= self.cap:
                break
            if now - modified >= self.min_age and name not in self._writing:
                victims.append(name)
                total -= size
        if total + need > self.cap:  # refused without deleting anything a page may still show
            raise Busy(f"{need:,} bytes more would pass the cap of {self.cap:,}")
        for name in victims:
            shutil.rmtree(self.root / name, ignore_errors=True)
        for session in [s for s, name in self._shown.items() if not (self.root / name).exists()]:
            del self._shown[session]


def run_bytes(rgb, codecs: int) -> int:
    """At most what write_run writes: the original and each reconstruction as RGB PNG files, an
    error map per result (1 byte a pixel), each codec's own file and the .cyc file (3 bytes a pixel
    each, more than any of them spends on a photo; the slack of the rest covers the worst case);
    zlib adds well under 1 % to data it cannot compress."""
    pixels, results = rgb.shape[0] * rgb.shape[1], 1 + codecs
    return int(1.01 * pixels * (3 * (1 + results) + results + 3 * results)) + 65_536


# The file name extension of each codec's file (JPEG 2000's is a bare codestream: .j2k, not .jp2).
EXTENSIONS = {"cycle": "cyc", "jpeg": "jpg", "jpeg2000": "j2k", "webp": "webp", "heif": "heic", "avif": "avif",
              "jxl": "jxl"}


@dataclass
class RunFiles:
    """What write_run wrote: the .cyc file, the reconstructions (PNG), every codec's own file as
    (codec, path, bytes) in table order, and the inspector's markup."""
    cyc: str
    reconstructions: list[str]
    codec_files: list[tuple[str, str, int]]
    view: str


class RunWriter:
    """A run's files in out_dir, written result by result (`add`, from any thread: `compare` calls it
    as each codec is done, while slower codecs still run), then the inspector's markup (`finish`).

    Each result: the codec's file as it measured it (named by codec, the .cyc file for the first),
    its reconstruction (PNG) and its error map. A codec that could not encode this image (a result
    that is not ok: its row says why) has no files."""

    def __init__(self, out_dir: Path, stem: str, rgb):
        self.out_dir, self.stem, self.rgb = Path(out_dir), stem, rgb
        self._written: dict[int, tuple] = {}  # index -> (codec file, reconstruction, error map)
        self._original: tuple[str, tuple[int, int]] | None = None  # its PNG, the detail centre
        self._lock, self._original_lock = threading.Lock(), threading.Lock()

    def add(self, index: int, result) -> None:
        if index == 0:  # with the first result (in compare's pool, not after its last)
            self._write_original()
        if not result.ok or index in self._written:
            return
        name = f"{result.entry.variant}.cyc" if index == 0 else \
            f"{result.codec}.{EXTENSIONS.get(result.codec, result.codec)}"
        path = self.out_dir / f"{self.stem}.{name}"
        path.write_bytes(result.data)
        recon = ui.save_png(result.reconstruction, self.out_dir / f"{self.stem}.{result.codec}.png")
        error = inspector.save_error_map(self.rgb, result.reconstruction,
                                         self.out_dir / f"{self.stem}.{result.codec}.error.png")
        with self._lock:
            self._written[index] = (str(path), recon, error)

    def _write_original(self) -> tuple[str, tuple[int, int]]:
        """The original's PNG and the inspector's detail centre, made once: (path, centre)."""
        with self._original_lock:
            if self._original is None:
                self._original = (ui.save_png(self.rgb, self.out_dir / f"{self.stem}.original.png"),
                                  ui.detail_centre(self.rgb))
            return self._original

    def finish(self, results, rows, labels: dict[str, str]) -> RunFiles:
        """The files of any result not added yet, the original, and the inspector's markup."""
        for i, r in enumerate(results):
            self.add(i, r)
        rgb = self.rgb
        original_path, detail = self._write_original()
        sources = [inspector.Source("original", "original", f"Original ({rgb.shape[1]}x{rgb.shape[0]})",
                                    "gradio_api/file=" + original_path, "image")]
        errors, recon_paths, codec_files = [], [], []
        for i, (r, row) in enumerate(zip(results, rows)):
            if i not in self._written:
                continue
            path, recon, error = self._written[i]
            codec_files.append((r.codec, path, len(r.data)))
            recon_paths.append(recon)
            label, quality = labels[r.codec], ui.cell_text("psnr", row["psnr"], 2)
            sources.append(inspector.Source(r.codec, label, f"{label}: {ui.kb(row['bytes'])}, {quality} dB",
                                            "gradio_api/file=" + recon, "image"))
            errors.append(inspector.Source(f"err-{r.codec}", f"error: {label}", f"Error map: {label}",
                                           "gradio_api/file=" + error, "error"))
        view = inspector.inspector_html(sources + errors, rgb.shape[1], rgb.shape[0], detail)
        cyc = self._written[0][0] if 0 in self._written else str(self.out_dir / f"{self.stem}.cyc")
        return RunFiles(cyc, recon_paths, codec_files, view)


def write_run(out_dir: Path, stem: str, rgb, results, rows, labels: dict[str, str]) -> RunFiles:
    """All of a run's files at once (`RunWriter`): each codec's file, the reconstructions (PNG),
    the error maps, and the inspector's markup, which loads the original, the reconstructions and
    the error maps from there."""
    return RunWriter(out_dir, stem, rgb).finish(results, rows, labels)
