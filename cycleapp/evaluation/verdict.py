"""Who wins on this image, in words, and which cells of the table earn a star.

A comparison matches every codec to the reference file (the learned codec's): to its size, or to
its quality on one metric. Only the codecs that matched within the tolerance compete (sizes within
`rate.TOLERANCE`, qualities within `matching.QUALITY_TOLERANCE`): a file 5 % larger than ours
would win on quality for the wrong reason. The others are listed as not compared, with the reason.
The verdict and the stars follow that one rule, read from the table's own rows, so the words can
never disagree with the numbers. Pure: rows in (`Measurement.row()` dicts), words and indices out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cycleapp.evaluation import registry
from cycleapp.core.rate import TOLERANCE
from cycleapp.evaluation.matching import QUALITY_TOLERANCE

LABELS = registry.labels()
# metric -> (name, how a difference is written)
METRICS = {"psnr": ("PSNR", "{:+.2f} dB"), "ms_ssim": ("MS-SSIM", "{:+.4f}")}
QUALITY_COLUMNS = ("psnr", "ms_ssim", "ssim")  # what a same-size comparison is about
TIME_COLUMNS = ("encode_ms", "decode_ms")


def label(row: dict) -> str:
    return LABELS.get(row["codec"], str(row["codec"]))


def competes(rows: list[dict], match: str = "size") -> list[bool]:
    """Whether each row takes part: the reference (first row) always; another row when it has a
    file matched to the reference within the tolerance."""
    ref = rows[0]
    flags = [True]
    for r in rows[1:]:
        if r.get("bytes") is None:
            flags.append(False)
        elif match == "size":
            flags.append(abs(r["bytes"] - ref["bytes"]) <= TOLERANCE * ref["bytes"])
        else:
            flags.append(r.get(match) is not None and ref.get(match) is not None
                         and abs(r[match] - ref[match]) <= QUALITY_TOLERANCE[match])
    return flags


def ratios(rows: list[dict]) -> list[float | None]:
    """Each file's bytes over the reference file's ('2.31x the bytes'); None without a file."""
    ref = rows[0]["bytes"]
    return [r["bytes"] / ref if r.get("bytes") is not None else None for r in rows]


def _best(rows: list[dict], flags: list[bool], key: str, better: str) -> set[int]:
    """Indices of the competing rows with the best value of `key` (ties all); none if fewer than
    two rows compete or all are equal."""
    values = [(i, r.get(key)) for i, r in enumerate(rows)
              if flags[i] and isinstance(r.get(key), (int, float))]
    if len(values) < 2:
        return set()
    best = (min if better == "low" else max)(v for _, v in values)
    if all(v == best for _, v in values):
        return set()
    return {i for i, v in values if v == best}


def stars(rows: list[dict], match: str = "size") -> dict[str, set[int]]:
    """Column key -> indices of the rows starred in it, among the competing rows only. At the same
    size the quality columns are starred (never bytes or bpp: they are what was matched); at the
    same quality the bytes ratio ('ratio'), never the quality that was matched. The times too."""
    flags = competes(rows, match)
    marked = {key: _best(rows, flags, key, "low") for key in TIME_COLUMNS}
    if match == "size":
        marked.update({key: _best(rows, flags, key, "high") for key in QUALITY_COLUMNS})
    else:
        with_ratio = [dict(r, ratio=q) for r, q in zip(rows, ratios(rows))]
        marked["ratio"] = _best(with_ratio, flags, "ratio", "low")
    return marked


@dataclass
class Verdict:
    """What the page says above the table: `winners` (metric or 'bytes' -> codec names) and the
    lines, first the heading."""
    match: str
    winners: dict[str, list[str]] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)  # the codecs not compared


def _names(indices, rows) -> str:
    names = [label(rows[i]) for i in sorted(indices)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _missed_line(rows: list[dict], flags: list[bool], match: str) -> str:
    ref = rows[0]
    reasons = []
    for r, ok in zip(rows, flags):
        if ok:
            continue
        if r.get("bytes") is None:
            why = "no file"
        elif match == "size":
            why = f"{100 * (r['bytes'] / ref['bytes'] - 1):+.1f} %"
        elif r.get(match) is None:
            why = f"no {METRICS[match][0]}"
        else:
            why = METRICS[match][1].format(r[match] - ref[match])
        reasons.append(f"{label(r)} ({why})")
    if not reasons:
        return ""
    what = (f"the size by more than {100 * TOLERANCE:g} %" if match == "size" else
            f"the {METRICS[match][0]} by more than {QUALITY_TOLERANCE[match]:g}")
    return f"Not compared, as they missed {what}: {', '.join(reasons)}."


def verdict(rows: list[dict], match: str = "size") -> Verdict:
    """The verdict on a comparison's rows (the reference first)."""
    flags = competes(rows, match)
    v = Verdict(match, missed=[r["codec"] for r, ok in zip(rows, flags) if not ok])
    ref = rows[0]
    others = [i for i in range(1, len(rows)) if flags[i]]
    if len(rows) == 1:
        v.lines = [f"Only {label(ref)} ran: tick codecs under \u201cCompare with\u201d for a verdict."]
        return v
    if match == "size":
        v.lines.append(f"At the same file size ({ref['bytes']:,} bytes, {ref['bpp']:.3f} bpp; "
                       f"\u00b1{100 * TOLERANCE:g} %), which decodes closest to the original:")
        for key, (name, diff) in METRICS.items():
            best = _best(rows, flags, key, "high")
            if not others:
                break
            if not best:
                if ref.get(key) is None:
                    v.lines.append(f"{name}: n/a on this image (under 161 pixels on a side).")
                else:
                    v.lines.append(f"{name}: a tie.")
                continue
            v.winners[key] = [rows[i]["codec"] for i in sorted(best)]
            top = rows[min(best)][key]
            if 0 in best:  # ours is best: by how much over the next best
                rest = [i for i in range(len(rows)) if flags[i] and i not in best and rows[i].get(key) is not None]
                runner = max(rest, key=lambda i: rows[i][key]) if rest else None
                tail = f", {diff.format(top - rows[runner][key])} over {label(rows[runner])}, the next best" \
                    if runner is not None else ""
                v.lines.append(f"{name}: {_names(best, rows)} {'is' if len(best) == 1 else 'are'} best{tail}.")
            else:
                v.lines.append(f"{name}: {_names(best, rows)} {'is' if len(best) == 1 else 'are'} best, "
                               f"{diff.format(top - ref[key])} over {label(ref)}.")
    else:
        name = METRICS[match][0]
        unit = " dB" if match == "psnr" else ""
        value = f"{ref[match]:.2f}" if match == "psnr" else f"{ref[match]:.4f}"
        v.lines.append(f"At the same {name} as {label(ref)}'s file ({value}{unit} \u00b1 {QUALITY_TOLERANCE[match]:g}{unit}, "
                       f"{ref['bytes']:,} bytes), the bytes each codec needs:")
        q = ratios(rows)
        ranked = sorted(others, key=lambda i: q[i])
        if ranked:
            parts = [f"{label(rows[i])} needs {q[i]:.2f}x the bytes" if n == 0 else f"{label(rows[i])} {q[i]:.2f}x"
                     for n, i in enumerate(ranked)]
            v.lines.append(", ".join(parts) + f" of {label(ref)}.")
            best = _best([dict(r, ratio=x) for r, x in zip(rows, q)], flags, "ratio", "low")
            if best:
                v.winners["bytes"] = [rows[i]["codec"] for i in sorted(best)]
                if 0 in best:
                    v.lines.append(f"Smallest file: {_names(best, rows)}; the next smallest needs "
                                   f"{q[ranked[0]]:.2f}x its bytes.")
                else:
                    v.lines.append(f"Smallest file: {_names(best, rows)}, {q[min(best)]:.2f}x {label(ref)}'s "
                                   f"bytes ({rows[min(best)]['bytes']:,} against {ref['bytes']:,}).")
            else:
                v.lines.append("Smallest file: a tie.")
    if not others:
        v.lines.append(f"No other codec matched {label(ref)}'s file within the tolerance: nothing to compare.")
    missed = _missed_line(rows, flags, match)
    if missed:
        v.lines.append(missed)
    return v
