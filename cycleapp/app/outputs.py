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


def write_run(out_dir: Path, stem: str, rgb, results, rows, labels: dict[str, str]) -> RunFiles:
    """The run's files in out_dir: each codec's file as it measured it (named by codec, the .cyc
    file among them), the reconstructions (PNG), and the inspector's markup, which loads the
    original, the reconstructions and the error maps from there. A codec that could not encode
    this image (a result that is not ok: its row says why) has no files."""
    cyc_path = out_dir / f"{stem}.{results[0].entry.variant}.cyc"
    cyc_path.write_bytes(results[0].data)
    codec_files = [(results[0].codec, str(cyc_path), len(results[0].data))]
    for r in results[1:]:
        if r.ok:
            path = out_dir / f"{stem}.{r.codec}.{EXTENSIONS.get(r.codec, r.codec)}"
            path.write_bytes(r.data)
            codec_files.append((r.codec, str(path), len(r.data)))
    original_path = ui.save_png(rgb, out_dir / f"{stem}.original.png")
    done = [(r, row) for r, row in zip(results, rows) if r.ok]
    recon_paths = [ui.save_png(r.reconstruction, out_dir / f"{stem}.{r.codec}.png") for r, _ in done]
    sources = [inspector.Source("original", "original", f"Original ({rgb.shape[1]}x{rgb.shape[0]})",
                                "gradio_api/file=" + original_path, "image")]
    errors = []
    for (r, row), path in zip(done, recon_paths):
        label, quality = labels[r.codec], ui.cell_text("psnr", row["psnr"], 2)
        sources.append(inspector.Source(r.codec, label, f"{label}: {row['bytes']:,} bytes, {quality} dB",
                                        "gradio_api/file=" + path, "image"))
        err = inspector.save_error_map(rgb, r.reconstruction, out_dir / f"{stem}.{r.codec}.error.png")
        errors.append(inspector.Source(f"err-{r.codec}", f"error: {label}", f"Error map: {label}",
                                       "gradio_api/file=" + err, "error"))
    view = inspector.inspector_html(sources + errors, rgb.shape[1], rgb.shape[0], ui.detail_centre(rgb))
    return RunFiles(str(cyc_path), recon_paths, codec_files, view)
