"""A real browser (Debian's Chromium, headless, via Playwright) uses the app as a person would."""
import shutil
from pathlib import Path

import pytest

from app_server import running_app
from conftest import EXAMPLES, REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run", "--disable-quic", "--disable-sync"]


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: run `bash tests/run.sh`, which installs it")
    with running_app() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(90_000)
        page.goto(url)
        page.wait_for_selector("#run")
        yield page
        browser.close()


def upload(page, path):
    from playwright.sync_api import expect

    clear = page.locator("#upload button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    with page.expect_file_chooser() as chooser:
        page.locator("#upload .upload-container").first.click()
    chooser.value.set_files(str(path))
    expect(page.locator("#upload")).to_contain_text(path.stem, timeout=30_000)


def test_upload_run_and_see_results(page):
    from playwright.sync_api import expect

    upload(page, EXAMPLES / "kodim23.png")
    page.click("#run")
    table = page.locator("#results")
    for row, name in enumerate(["cycle", "jpeg", "jpeg2000"]):
        expect(table.get_by_test_id(f"cell-{row}-0")).to_have_text(name, timeout=90_000)
    for name in ("cycle", "jpeg", "jpeg2000"):
        page.locator(f"#slider-{name} img").first.wait_for()
    page.locator("#rd-plot img").first.wait_for()
    src = page.locator("#slider-cycle img").first.get_attribute("src")
    assert ".png" in src or "image/png" in src, src  # lossless, not Gradio's default WebP
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)


def test_text_file_named_png_shows_a_message(page, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("hello, I am text")
    upload(page, fake)
    page.click("#run")
    page.get_by_text("Could not read this file as an image").first.wait_for()
    assert page.get_by_text("Traceback").count() == 0


def test_empty_upload_shows_a_message(page, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    upload(page, empty)
    page.click("#run")
    page.get_by_text("The uploaded file is empty").first.wait_for()
    assert page.get_by_text("Traceback").count() == 0


def test_huge_image_is_downscaled_with_a_visible_note(page, tmp_path):
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:1800, 0:2600]
    smooth = np.stack([x % 256, y % 256, (x + y) % 256], axis=2).astype(np.uint8)
    big = tmp_path / "big.png"
    Image.fromarray(smooth).save(big)
    upload(page, big)
    page.click("#run")
    page.locator("#status").get_by_text("downscaled").first.wait_for()
