"""One image, the learned codec and the others at the same file size (or the same quality),
measured alike."""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable

import numpy as np

from cycleapp.core import learned
from cycleapp.evaluation import registry
from cycleapp.core.checkpoint import Checkpoint
from cycleapp.core.interface import Codec, CodecError
from cycleapp.core.learned import CycleCodec
from cycleapp.imageio import MAX_PIXELS as ENCODE_MAX_PIXELS, size_problem
from cycleapp.core.rate import match_learned, timed
from cycleapp.evaluation.matching import difficulty, match_bytes, match_quality
from cycleapp.evaluation.measure import COLUMNS, Measurement, measure
from cycleapp.evaluation.metrics import Original

# compare keeps every codec's reconstruction and computes PSNR, SSIM and MS-SSIM on the whole
# image: its peak is about 235 bytes a pixel over the process's own (all six codecs, two workers,
# with core.allocator's reuse of freed memory, which the app and the CLI turn on; the original's
# statistics, metrics.Original, are 87 of them; measured on 4000x2666), so about 3.7 GB at this
# limit, where `encode` takes up to imageio.MAX_PIXELS.
MAX_PIXELS = 16_000_000
LIMIT_NOTE = f" for compare (encode takes up to {ENCODE_MAX_PIXELS:,})"
# The codecs by the time a match takes (HEIF's encoder is the slowest by far, JPEG's the fastest).
SLOWEST_FIRST = ("heif", "avif", "jxl", "webp", "jpeg2000", "jpeg")
# What the other codecs are matched to: the reference file's size, or its quality on one metric.
MODES = {"size": "the same file size", "psnr": "the same PSNR", "ms_ssim": "the same MS-SSIM"}


class Kept:
    """Measurements kept between comparisons in one process (the app's), so that a re-run of the
    same image with one more codec, or in the other mode, measures only what is new: the same
    image, codec and target make the same file. At most `max_bytes` of files, reconstructions and
    originals (`_size`), the least recently used going first."""

    def __init__(self, max_bytes: int = 400_000_000):
        self.max_bytes, self._bytes = max_bytes, 0
        self._kept: OrderedDict[tuple, Measurement] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def image_key(rgb: np.ndarray) -> str:
        return hashlib.sha1(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()

    @staticmethod
    def _size(m: Measurement) -> int:
        """Its file, its reconstruction and the original it refers to (one original is shared by a
        comparison's measurements and counted with each: `max_bytes` bounds what is held). Counted
        without the original, the app's cache held about twice its 400 MB (tests/soak_app.py)."""
        return len(m.data) + sum(a.nbytes for a in (m.reconstruction, m.original) if a is not None)

    def get(self, key: tuple) -> Measurement | None:
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        return None

    def put(self, key: tuple, m: Measurement) -> Measurement:
        with self._lock:
            if key not in self._kept and self._size(m) <= self.max_bytes:
                self._kept[key] = m
                self._bytes += self._size(m)
                while self._bytes > self.max_bytes:
                    self._bytes -= self._size(self._kept.popitem(last=False)[1])
        return m


def compare(rgb: np.ndarray, reference: Codec | Checkpoint | int, codecs: list[str], match: str = "size",
            workers: int = 1, report: Callable[[str], None] | None = None, kept: Kept | None = None,
            done: Callable[[int, Measurement], None] | None = None) -> list[Measurement]:
    """The reference codec at its default setting, then each named codec matched to its file size
    (`match` "size"), or to its quality (`match` "psnr" or "ms_ssim": `matching.match_quality`).

    `reference` is a registry entry (e.g. `learned.by_name("medium")`); a Checkpoint stands for the
    learned codec at that code size, and an int for the learned codec matched to that many bytes.
    Results carry the files and reconstructions: a view of the learned code reads
    `results[0].entry.code(results[0].data)`, with no second encode. A codec that cannot encode
    this image (a size its library refuses) has a result without a file (`ok` False), its reason
    in the note; ValueError for an image over MAX_PIXELS.

    `workers` > 1 matches that many codecs at once (threads: the codecs' libraries release the
    GIL), so each encode and decode time is measured while other codecs run. `report` is called
    with a line saying what is being done, before each step (from the calling thread). `kept`:
    measurements of earlier comparisons to reuse (see `Kept`; their times are those of their run).
    `done(i, measurement)` is called in the pool as each result is complete, its metrics computed
    (i: its place in the results, 0 the reference): the app writes a result's files there, while
    the slowest codecs still run, rather than all of them at the end.

    The codecs' settings are found by `matching.match_bytes` and `match_quality` (a secant search
    from the codec's usual setting for an image this costly, `matching.difficulty`: two to four
    encodes each, where a bisection takes eight). A quality match keeps the pixels its search
    decoded and the quality it computed on them; no search candidate but the file kept is ever
    measured on SSIM or the other metrics. At the same size the others need only the reference's
    file size, so its decode and metrics run in the pool too, not before the searches start. The
    original's own part of SSIM and MS-SSIM (`metrics.Original`: its local means and variances) is
    computed once for every file, in the pool while the reference encodes (a second of one core
    idle otherwise: the searches wait for its size).
    """
    if match not in MODES:
        raise ValueError(f"unknown match {match!r} (choose from {', '.join(MODES)})")
    registry.check(codecs, registry.matchable())
    problem = size_problem(rgb.shape[1], rgb.shape[0], MAX_PIXELS, limit_note=LIMIT_NOTE)
    if problem:
        raise ValueError(problem)
    report = report or (lambda line: None)
    done = done or (lambda i, m: None)
    kept = kept or Kept(0)
    image = kept.image_key(rgb) if kept.max_bytes else ""
    # What SSIM and MS-SSIM compute on the original alone, computed once for every file measured
    # against it; dropped with this comparison (Kept keeps the numbers, not this).
    original = Original(rgb)
    if isinstance(reference, Checkpoint):
        reference = CycleCodec(reference)
    labels = [registry.get(n).label for n in codecs]
    workers = max(1, min(workers, len(codecs)))
    with ThreadPoolExecutor(workers) as pool:
        if isinstance(reference, int):
            report(f"Compressing with {CycleCodec.label} to {reference:,} bytes")
            key = (image, "target", reference)
        else:
            report(f"Compressing with {reference.label} ({reference.describe(reference.default)})")
            key = (image, reference.name, reference.variant, getattr(reference, "rdoq_weight", None))
        first = kept.get(key)
        if first is None:
            # beside the reference's encode, which the rest waits for (not awaited: an error there
            # comes back at the metrics' first use of it)
            pool.submit(original.prepare)
            if isinstance(reference, int):
                m = match_learned(rgb, reference)
                first = kept.put(key, measure(learned.by_name(m.variant), rgb, m.setting, m.note, m.encoded))
            elif match == "size":
                # The others need only its file's size: its decode runs in the pool, beside their searches.
                try:
                    encoded = timed(reference.encode, rgb, reference.default)
                except CodecError:
                    first = measure(reference, rgb)  # the refusal, said as measure says it
            else:
                first = kept.put(key, measure(reference, rgb))
        if first is not None and not first.ok:
            raise CodecError(f"{first.entry.label} {first.note}")
        size = len(first.data if first is not None else encoded[0])
        target = size if match == "size" else getattr(first.scored(original, [match]), match)
        if target is None:
            raise ValueError("MS-SSIM needs an image of at least 161 pixels on each side: compare at the same "
                             "file size or PSNR")
        # one JPEG encode (which a JPEG search takes as its own): where each search starts, for this image
        probe: dict = {}
        hard = difficulty(rgb, 8 * size / (rgb.shape[0] * rgb.shape[1]), probe)

        def matched(i: int, name: str) -> Measurement:
            key = (image, name, match, target)
            result = kept.get(key)
            if result is None:
                entry = registry.get(name)
                if match == "size":
                    m = match_bytes(entry, rgb, target, hard=hard, known=probe if name == "jpeg" else None)
                    result = measure(entry, rgb, m.setting, m.note, m.encoded)
                else:  # the search decoded and scored its file: that is kept, not done again
                    m = match_quality(entry, rgb, match, target, near_bpp=first.bpp, hard=hard,
                                      known=probe if name == "jpeg" else None, original=original)
                    result = measure(entry, rgb, m.setting, m.note, m.encoded, m.decoded,
                                     {match: m.value} if m.value is not None else None)
                kept.put(key, result.scored(original))  # the metrics, computed here (in parallel when workers > 1)
            done(i, result)
            return result

        def reference_done() -> Measurement:
            m = first if first is not None else kept.put(key, measure(reference, rgb, None, "", encoded))
            if m.ok:
                m.scored(original)
                done(0, m)
            return m

        # the slowest started first, so that the last to finish is not a slow one started late
        order = sorted(range(len(codecs)), key=lambda i: SLOWEST_FIRST.index(codecs[i])
                       if codecs[i] in SLOWEST_FIRST else len(SLOWEST_FIRST))
        started = {i: pool.submit(matched, i + 1, codecs[i]) for i in order[:workers]}
        # then ours (its decode and metrics: about as long as a middling codec's search), the longest
        # first, so that no long task is left alone at the end while a core waits
        ours = pool.submit(reference_done)
        started.update({i: pool.submit(matched, i + 1, codecs[i]) for i in order[workers:]})
        futures = [started[i] for i in range(len(codecs))]
        pending = list(futures)
        while pending:
            running = [labels[i] for i in order if not futures[i].done()][:workers]  # started in this order
            report(f"Matching {' and '.join(running)} to {MODES[match]}: "
                   f"{len(futures) - len(pending)} of {len(futures)} codecs done")
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            pending = [f for f in pending if f not in finished]
        first = ours.result()
    if not first.ok:  # its file, made above, did not decode
        raise CodecError(f"{first.entry.label} {first.note}")
    return [first, *(f.result() for f in futures)]


def format_table(rows: list[dict]) -> str:
    """A plain-text table, 'n/a' where a metric does not apply."""
    def cell(key, value):
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return {"bpp": f"{value:.4f}", "psnr": f"{value:.2f}", "ssim": f"{value:.4f}",
                    "ms_ssim": f"{value:.4f}"}.get(key, f"{value:.1f}")
        return str(value)
    table = [COLUMNS] + [[cell(k, r[k]) for k in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in table)
