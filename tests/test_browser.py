"""A real browser (Debian's Chromium, headless, via Playwright) uses the app as a person would:
at a desktop size (1440x900) and a phone size (390x844). Screenshots go to tests/artifacts/, full
size and as small WebP files; the README shows copies of those in tests/screenshots/ (a test run
never changes tracked files)."""
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app_server import running_app
from conftest import EXAMPLES, REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "tests" / "artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run", "--disable-quic", "--disable-sync"]
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
SERVER_PATH = re.compile(r"(/tmp/|/var/|/home/|/root/|/work/|/private/|gradio_api/file|[A-Z]:\\)")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: run `bash tests/run.sh`, which installs it")
    with running_app() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        browser.app_url = url
        yield browser
        browser.close()


def open_page(browser, viewport):
    page = browser.new_page(viewport=viewport)
    page.set_default_timeout(90_000)
    page.goto(browser.app_url)
    page.wait_for_selector("#run")
    return page


@pytest.fixture(scope="module")
def desktop(browser):
    page = open_page(browser, DESKTOP)
    yield page
    page.close()


@pytest.fixture(scope="module")
def phone(browser):
    page = open_page(browser, PHONE)
    yield page
    page.close()


def upload(page, path):
    from playwright.sync_api import expect

    clear = page.locator("#upload button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    with page.expect_file_chooser() as chooser:
        page.locator("#upload .upload-container").first.click()
    chooser.value.set_files(str(path))
    expect(page.locator("#upload")).to_contain_text(path.stem, timeout=30_000)


def run_and_wait(page, codecs=("cycle", "jpeg", "jpeg2000")):
    """Press the button; wait for this run's plot (it comes after the table), then check the table's
    rows (in this order). The previous run's plot is marked first: until the page has cleared it,
    the previous run's table and plot would otherwise pass for this run's."""
    from playwright.sync_api import expect

    page.eval_on_selector_all("#rd-plot img", "imgs => imgs.forEach(i => i.dataset.stale = '1')")
    page.click("#run")
    page.locator("#rd-plot img:not([data-stale])").first.wait_for(timeout=240_000)
    rows = page.locator("#results-view tbody tr")
    expect(rows).to_have_count(len(codecs))
    assert [rows.nth(i).get_attribute("data-codec") for i in range(len(codecs))] == list(codecs)


def screenshot(page, name, width):
    """Full page to tests/artifacts/NAME.png, and a small WebP copy beside it (for the README)."""
    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(png), full_page=True)
    img = Image.open(png).convert("RGB")
    if img.width > width:
        img = img.resize((width, round(img.height * width / img.width)), Image.Resampling.LANCZOS)
    img.save(ARTIFACTS / f"{name}.webp", quality=72, method=6)


def regions(page):
    return page.eval_on_selector_all(".insp-view", "vs => vs.map(v => v.dataset.region)")


def test_desktop_run(desktop):
    upload(desktop, EXAMPLES / "kodim23.png")
    run_and_wait(desktop)
    # The inspector shows the original and the cycle model side by side, from lossless PNG files.
    views = desktop.locator(".insp-view")
    assert views.count() == 2
    for img in desktop.locator(".insp-view img").all():
        assert ".png" in img.get_attribute("src")
        assert desktop.wait_for_function("img => img.complete && img.naturalWidth === 768", arg=img.element_handle())
    # Before a run nothing but the inputs and a hint; after it the status says what happened.
    assert "Done in" in desktop.locator("#status").inner_text()
    screenshot(desktop, "app-desktop", 960)


def test_zoom_is_synchronised(desktop):
    """Zoom or pan one view: every view shows the same region of the image."""
    desktop.click(".insp [data-mode=grid]")
    assert desktop.locator(".insp-view").count() == 4  # the original, CycleCodec, JPEG, JPEG 2000
    before = regions(desktop)
    assert len(set(before)) == 1
    view = desktop.locator(".insp-view").nth(1)
    view.scroll_into_view_if_needed()
    box = view.bounding_box()
    desktop.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.4)
    for _ in range(4):
        desktop.mouse.wheel(0, -240)
    after = regions(desktop)
    assert len(set(after)) == 1 and after[0] != before[0], (before, after)
    x0, y0, x1, y1 = map(float, after[0].split(","))
    assert x1 - x0 < 768 / 4  # zoomed in at least 4x from the whole image
    # Pan by dragging another view.
    desktop.locator(".insp-view").nth(2).scroll_into_view_if_needed()
    other = desktop.locator(".insp-view").nth(2).bounding_box()
    desktop.mouse.move(other["x"] + 100, other["y"] + 100)
    desktop.mouse.down()
    desktop.mouse.move(other["x"] + 60, other["y"] + 80, steps=4)
    desktop.mouse.up()
    panned = regions(desktop)
    assert len(set(panned)) == 1 and panned[0] != after[0]
    # 1:1 shows one image pixel per screen pixel in every view (the same pixels).
    desktop.click(".insp [data-zoom='1']")
    exact = regions(desktop)
    centre = desktop.locator(".insp-view").first.get_attribute("data-centre")
    width = desktop.locator(".insp-view").first.bounding_box()["width"]
    x0, _, x1, _ = map(float, exact[0].split(","))
    assert len(set(exact)) == 1 and abs((x1 - x0) - min(width, 768)) <= 1
    # An error map per codec, in step with the rest.
    desktop.click(".insp [data-mode=errors]")
    sources = desktop.eval_on_selector_all(".insp-view", "vs => vs.map(v => v.dataset.source)")
    assert sources == ["err-cycle", "err-jpeg", "err-jpeg2000"] and len(set(regions(desktop))) == 1
    # The slider: any codec on either side, the same zoom.
    desktop.click(".insp [data-mode=slider]")
    desktop.select_option(".insp-right", "jpeg")
    assert desktop.eval_on_selector_all(".insp-view", "vs => vs.map(v => v.dataset.source)") == ["original|jpeg"]
    view = desktop.locator(".insp-view").first
    assert view.get_attribute("data-scale") == "1" and view.get_attribute("data-centre") == centre
    desktop.click(".insp [data-mode=side]")


def test_phone_run_and_main_columns_visible(phone):
    upload(phone, EXAMPLES / "kodim04.png")
    run_and_wait(phone)
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for key in ("codec", "bytes", "bpp", "psnr", "ms_ssim"):
        box = phone.locator(f"#results-view thead th.c-{key}").bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (key, box)
    screenshot(phone, "app-phone", 390)


def test_narrow_strip_keeps_the_page_bounded(desktop, tmp_path):
    rng = np.random.default_rng(0)
    strip = np.clip(np.linspace(0, 255, 2000)[:, None, None] + rng.normal(0, 30, (2000, 3, 3)), 0, 255)
    path = tmp_path / "strip.png"
    Image.fromarray(strip.astype(np.uint8)).save(path)
    upload(desktop, path)
    run_and_wait(desktop)
    height = desktop.evaluate("document.documentElement.scrollHeight")
    assert height < 4000, height
    code = desktop.locator("#code-view img").bounding_box()
    assert code["height"] <= 640 and code["width"] >= 16, code


def test_error_after_success_clears_results_and_stays(desktop, tmp_path):
    from playwright.sync_api import expect

    upload(desktop, EXAMPLES / "kodim04.png")
    run_and_wait(desktop)
    fake = tmp_path / "notes.png"
    fake.write_text("hello, I am text")
    upload(desktop, fake)
    desktop.click("#run")
    status = desktop.locator("#status")
    expect(status).to_contain_text("Could not read this file", timeout=60_000)
    # The previous results are gone, not left on screen as if they were this file's.
    for box in ("#results-box", "#inspect-box"):
        expect(desktop.locator(box)).to_be_hidden()
    assert "All codecs matched" not in status.inner_text() and "Done in" not in status.inner_text()
    time.sleep(15)  # a toast fades; the status stays until the next run
    expect(status).to_contain_text("Could not read this file ('notes.png') as an image")
    text = desktop.locator("body").inner_text()
    assert not SERVER_PATH.search(text), SERVER_PATH.search(text)
    assert "Traceback" not in text
    ARTIFACTS.mkdir(exist_ok=True)
    desktop.screenshot(path=str(ARTIFACTS / "app-error.png"), full_page=True)
    # An empty file says so too.
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    upload(desktop, empty)
    desktop.click("#run")
    expect(status).to_contain_text("The uploaded file is empty", timeout=60_000)


def test_target_size_in_kb(desktop):
    """A target in KB replaces the preset (the status says what the rate control chose); a bad one
    is refused with a message that stays; emptied, the preset is used again."""
    from playwright.sync_api import expect

    upload(desktop, EXAMPLES / "kodim23.png")
    target = desktop.locator("#target-kb input")
    status = desktop.locator("#status")
    target.fill("-5")
    desktop.click("#run")
    expect(status).to_contain_text("The target size must be more than 0 KB", timeout=60_000)
    time.sleep(3)
    expect(status).to_contain_text("more than 0 KB")
    assert "Traceback" not in desktop.locator("body").inner_text()
    target.fill("15")
    run_and_wait(desktop)
    expect(status).to_contain_text("Target 15,000 bytes")
    size = int(desktop.locator("#results-view tbody tr").first.locator("td.c-bytes").inner_text()
               .replace(",", "").replace("★", ""))
    assert abs(size - 15_000) <= 450, size
    target.fill("")
    run_and_wait(desktop)
    assert "Target" not in status.inner_text()


def test_queue_place_shows_in_the_status(browser, desktop):
    """While other visitors' comparisons run, the status area shows this one's place in the queue,
    on a line of its own under the words that explain it (not over them)."""
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status
    from playwright.sync_api import expect

    upload(desktop, EXAMPLES / "kodim23.png")
    other = Client(browser.app_url, verbose=False)
    jobs = [other.submit(handle_file(str(EXAMPLES / "kodim04.png")), "medium", ["jpeg", "jpeg2000"],
                         api_name="/compare") for _ in range(2)]
    deadline = time.time() + 60
    while jobs[0].status().code != Status.PROCESSING and time.time() < deadline:
        time.sleep(0.1)
    desktop.click("#run")
    status = desktop.locator("#status")
    expect(status).to_contain_text(re.compile(r"queue: [1-9]\d*/\d+"), timeout=30_000)
    expect(status).to_contain_text("your place in the queue")
    line = desktop.locator("#status .progress-text").bounding_box()
    words = desktop.locator("#status .status li").last.bounding_box()
    assert line["y"] >= words["y"] + words["height"], (line, words)
    expect(status).to_contain_text("Done in", timeout=180_000)
    for job in jobs:
        job.result()
    other.close()
