"""Write docs/results.md, and the results tables of README.md, from the evaluations committed in
train/results/:   python -m train.report          (--check: only say whether they are current)

No number in those tables is typed by hand: `train.evaluate`, `train.ablation` and
`train.diagnose` write their JSON (and text) files into train/results/, and this module turns them
into markdown, computing every BD-rate again with `train.evaluate`'s own functions. The README
keeps one short table per data set between the markers `<!-- report:NAME -->` and
`<!-- /report -->`; this command rewrites what lies between them and nothing else.
tests/test_report.py regenerates both in-process and fails if either differs from the committed files.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from cycleapp.core import learned
from cycleapp.evaluation import registry
from train.evaluate import bd_rate

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "train" / "results"
DOCS_RESULTS = REPO / "docs" / "results.md"
README = REPO / "README.md"
COMMAND = "python -m train.report"
# Data sets in the order they are shown: (title, the folder the JSON was measured on).
DATASETS = {
    "kodak": ("Kodak", "../shared/data/kodak"),
    "cid22-val": ("CID22 validation", "../shared/data/dev/cid22-val"),
    "clic2025-val": ("CLIC 2025 validation", "../shared/data/dev/clic2025-val"),
}
METRICS = (("psnr", "PSNR"), ("ms_ssim", "MS-SSIM"))
BLOCK = re.compile(r"(<!-- report:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /report -->)", re.S)


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f} %"


def load(name: str, results: Path = RESULTS) -> dict:
    return json.loads((results / f"{name}.json").read_text())


def evaluations(results: Path = RESULTS) -> list[str]:
    """The data sets evaluated: every JSON of `train.evaluate` with curves (not the -matched ones),
    those of DATASETS first, in its order."""
    found = sorted(p.stem for p in results.glob("*.json")
                   if not p.stem.endswith("-matched") and json.loads(p.read_text()).get("codecs"))
    return [n for n in DATASETS if n in found] + [n for n in found if n not in DATASETS]


def each_image(anchor: dict, test: dict, metric: str) -> list[float | None]:
    """Per image, the BD-rate of `test` against `anchor` (None where the two curves do not overlap)."""
    a, t = anchor["per_image"], test["per_image"]
    return [bd_rate({"bpp": ab, metric: aq}, {"bpp": tb, metric: tq}, metric)
            for ab, aq, tb, tq in zip(a["bpp"], a[metric], t["bpp"], t[metric])]


def mean_median(rates: list[float | None]) -> str:
    rates = [r for r in rates if r is not None]
    return f"{percent(float(np.mean(rates)))} ({percent(float(np.median(rates)))})" if rates else "n/a"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows)]


def size_line(cycle: dict) -> str:
    """The code sizes' mean bpp and PSNR in one line."""
    points = [f"`{s}` {b:.3f} bpp, {p:.2f} dB" for s, b, p in zip(cycle["setting"], cycle["bpp"], cycle["psnr"])]
    return f"{len(cycle['per_image']['bpp'])} images. Code sizes (mean bpp, PSNR): " + "; ".join(points) + "."


def readme_block(name: str, results: Path = RESULTS) -> str:
    """The README's table for one data set: the per-image BD-rates against every codec."""
    codecs = load(name, results)["codecs"]
    ours, others = codecs[learned.LEARNED], [n for n in codecs if n != learned.LEARNED]
    labels = registry.labels()
    rows = [[f"{label}: mean (median)", *(mean_median(each_image(codecs[n], ours, metric)) for n in others)]
            for metric, label in METRICS]
    return "\n".join([size_line(ours), "",
                      *table(["per-image BD-rate vs", *(labels.get(n, n) for n in others)], rows)]) + "\n"


def dataset_section(name: str, results: Path = RESULTS) -> list[str]:
    data = load(name, results)
    title, folder = DATASETS.get(name, (name, "?"))
    codecs, labels = data["codecs"], registry.labels()
    ours, others = codecs[learned.LEARNED], [n for n in codecs if n != learned.LEARNED]
    out = [f"## {title}: {data['images']} images", ""]
    if (results / f"{name}-rd.png").exists():
        out += [f"![Rate-distortion on {title}](../train/results/{name}-rd.png)", ""]
    out += [f"From `train/results/{name}.json` (`--images {folder}`).", ""]
    out += table(["code size", "bpp", "PSNR (dB)", "MS-SSIM"],
                 [[s, f"{b:.3f}", f"{p:.2f}", f"{m:.4f}"]
                  for s, b, p, m in zip(ours["setting"], ours["bpp"], ours["psnr"], ours["ms_ssim"])]) + [""]
    rows = []
    for metric, label in METRICS:
        rows.append([f"{label}, per image: mean (median)",
                     *(mean_median(each_image(codecs[n], ours, metric)) for n in others)])
        rows.append([f"{label}, mean curves", *(percent(bd_rate(codecs[n], ours, metric)) for n in others)])
    if (results / f"{name}-matched.json").exists():
        matched = load(f"{name}-matched", results)["matched"]
        mine = matched[learned.LEARNED]
        cell = lambda n, f: f(n) if n in matched else ""
        for metric, label in METRICS:
            rows.append([f"{label}, mean curves at matched sizes",
                         *(cell(n, lambda n: percent(bd_rate(matched[n], mine, metric))) for n in others)])
        rows.append(["matches outside 3 % (of images x code sizes)",
                     *(cell(n, lambda n: str(matched[n]["missed"])) for n in others)])
    out += ["BD-rate of CycleCodec against each codec (negative: fewer bytes for the same quality):", ""]
    out += table(["BD-rate vs", *(labels.get(n, n) for n in others)], rows) + [""]
    if rc := data.get("rate_control"):
        out += [f"Rate control (`--rate-control`, {rc['points']} targets half-way between neighbouring code "
                f"sizes): every file within {100 * rc['size_error_max']:.1f} % of its target; the points lie "
                f"{rc['above_line_db_mean']:+.2f} dB from the straight line joining the two sizes' points on "
                f"average, {rc['above_line_db_min']:+.2f} dB at worst (positive: above it).", ""]
    out += [f"Per image, PSNR BD-rate of CycleCodec against each codec ({title}):", ""]
    per_codec = [each_image(codecs[n], ours, "psnr") for n in others]
    out += table(["image", *(labels.get(n, n) for n in others)],
                 [[file, *(percent(rates[i]) for rates in per_codec)] for i, file in enumerate(data["files"])])
    return out + [""]


def ablation_section(results: Path = RESULTS) -> list[str]:
    runs = sorted((load(p.stem, results) for p in results.glob("ablation*.json")), key=lambda r: r["seed"])
    if not runs:
        return []
    seeds = " / ".join(str(r["seed"]) for r in runs)
    first = runs[0]
    out = ["## Ablation: tied or untied weights, with or without the cycle loss", "",
           f"`python -m train.ablation --steps {first['steps']} --seed N` (`train/results/ablation*.json`): the "
           f"`{first['size']}` code size alone, {first['steps']} steps from the same orthogonal start, "
           f"measured on Kodak with real files; RD loss is `lambda * 255^2 * MSE + bpp` at lambda "
           f"{first['lambda']:g} (lower is better). Seeds {seeds}:", ""]
    rows = []
    for variant in first["variants"]:
        v = [r["variants"][variant] for r in runs]
        rows.append([variant, " / ".join(f"{x['bpp']:.4f}" for x in v), " / ".join(f"{x['psnr']:.2f}" for x in v),
                     " / ".join(f"{x['rd_loss']:.4f}" for x in v), f"{v[0]['parameters']:,}"])
    out += table([f"variant (seed {seeds})", "bpp", "PSNR (dB)", "RD loss", "transform parameters"], rows)
    return out + [""]


def diagnosis_section(results: Path = RESULTS) -> list[str]:
    text = results / "diagnose.txt"
    if not text.exists():
        return []
    return ["## Where the bits and the error go", "",
            "`python -m train.diagnose ../shared/data/kodak ../shared/data/dev/clic2025-val --sizes tiny,medium,huge "
            "--versus jpeg2000 --out train/results/diagnose.json | tee train/results/diagnose.txt` printed:", "",
            "```", text.read_text().strip("\n"), "```", ""]


def results_markdown(results: Path = RESULTS) -> str:
    """The whole of docs/results.md."""
    out = ["# Results", "",
           f"<!-- Generated by `{COMMAND}` from train/results/: do not edit by hand. -->", "",
           f"Generated by `{COMMAND}` from the files in `train/results/`, which these commands wrote "
           "(see [training.md](training.md) for the checkpoints they measured):", "",
           "```bash",
           *(f".venv/bin/python -m train.evaluate --images {folder}{' --rate-control' if name == 'kodak' else ''} "
             f"--out train/results/{name}.json --plot train/results/{name}-rd.png" for name, (_, folder) in DATASETS.items()),
           *(f".venv/bin/python -m train.evaluate --images {folder} --codecs \"\" --matched "
             f"{','.join(n for n in load(f'{name}-matched', results)['matched'] if n != learned.LEARNED)} "
             f"--out train/results/{name}-matched.json"
             for name, (_, folder) in DATASETS.items() if (results / f"{name}-matched.json").exists()),
           "```", "",
           "With a new checkpoint, `--codecs cycle --reuse train/results/NAME.json` measures the learned codec "
           "alone and takes the classical codecs' curves (deterministic encoders) from the earlier JSON.", "",
           "Each point is the mean over the images of real files: bpp is `8 x file bytes / pixels` (the `.cyc` "
           "header included), PSNR over RGB (peak 255), MS-SSIM in dB for the BD-rates. The BD-rate is "
           "Bjøntegaard's (cubic fit of log-rate over quality). Three kinds are given:", "",
           "- **per image**: each image's curves compared, then the mean and median over the images; the "
           "measure to judge the codec by, since it compares the codecs on the same photo at the same size, "
           "as the app does;",
           "- **mean curves**: the curves of the means over the images. JPEG 2000 is swept by target bpp (every "
           "image the same bpp) while a code size gives each image what its content costs, so against JPEG 2000 "
           "these mostly compare two allocations of bits over the images;",
           "- **mean curves at matched sizes** (`--matched`): every other codec matched, image by image, to the "
           "size of each of CycleCodec's files (within 3 %, misses counted), so all codecs share one allocation.",
           ""]
    for name in evaluations(results):
        out += dataset_section(name, results)
    out += ablation_section(results) + diagnosis_section(results)
    return "\n".join(out).rstrip("\n") + "\n"


def readme_with_tables(text: str, results: Path = RESULTS) -> str:
    """README text with every `<!-- report:NAME -->` block rewritten from train/results/NAME.json."""
    return BLOCK.sub(lambda m: m.group(1) + readme_block(m.group("name"), results) + m.group(4), text)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is not current")
    args = p.parse_args(argv)
    targets = {DOCS_RESULTS: results_markdown(), README: readme_with_tables(README.read_text())}
    stale = [path for path, text in targets.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(REPO)} is not current: run {COMMAND}", file=sys.stderr)
        raise SystemExit(1 if stale else 0)
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(targets[path])
        print(f"wrote {path.relative_to(REPO)}")
    if not stale:
        print("docs/results.md and the README's tables are current")


if __name__ == "__main__":
    main()
