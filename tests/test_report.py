"""docs/results.md and the README's results tables are what `python -m train.report` makes of
train/results/ today, and the report computes its numbers from the JSON rather than copying them."""
import json
import re

import numpy as np
import pytest

from train import report


def test_docs_results_is_regenerated_exactly():
    assert report.DOCS_RESULTS.read_text() == report.results_markdown(), \
        "docs/results.md is not current: run python -m train.report"


def test_readme_tables_are_regenerated_exactly():
    text = report.README.read_text()
    assert report.readme_with_tables(text) == text, "README.md's tables are not current: run python -m train.report"
    shown = [m.group("name") for m in report.BLOCK.finditer(text)]
    assert shown == report.evaluations(), "the README shows one table per evaluated data set, in order"


def test_check_says_current():
    with pytest.raises(SystemExit) as stop:
        report.main(["--check"])
    assert stop.value.code == 0


def test_per_image_rates_agree_with_what_evaluate_printed():
    """train.evaluate stored its own report lines in each JSON: the tables must say the same."""
    markdown = report.results_markdown()
    for name in report.evaluations():
        data = report.load(name)
        printed = [line for line in data["report"] if "per image PSNR" in line]
        labels = [n for n in data["codecs"] if n != "cycle"]
        assert len(printed) == len(labels)
        row = next(line for line in markdown.split(f"## {report.DATASETS[name][0]}")[1].splitlines()
                   if line.startswith("| PSNR, per image"))
        cells = row.strip("|").split("|")[1:]
        for line, cell in zip(printed, cells):
            mean, median = re.search(r"mean (\S+) %, median (\S+) %", line).groups()
            assert cell.strip() == f"{mean} % ({median} %)"


def test_tables_follow_the_json(tmp_path):
    """Files 10 % smaller on every image move each per-image BD-rate r to (1 + r) * 0.9 - 1."""
    data = report.load("kodak")
    before = report.each_image(data["codecs"]["jpeg2000"], data["codecs"]["cycle"], "psnr")
    each = data["codecs"]["cycle"]["per_image"]
    each["bpp"] = [[0.9 * b for b in image] for image in each["bpp"]]
    (tmp_path / "kodak.json").write_text(json.dumps(data))
    after = report.each_image(data["codecs"]["jpeg2000"], data["codecs"]["cycle"], "psnr")
    np.testing.assert_allclose(after, [(100 + r) * 0.9 - 100 for r in before], atol=1e-9)
    assert report.readme_block("kodak", tmp_path) != report.readme_block("kodak")
    assert report.evaluations(tmp_path) == ["kodak"]
