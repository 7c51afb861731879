"""A real browser (Debian's Chromium, headless, via Playwright) uses the app as a person would:
at a desktop size (1440x900) and a phone size (390x844, a touch screen). Screenshots go to
tests/artifacts/, as PNG and as small WebP files; the README and docs/usage.md show copies of the
WebP files in tests/screenshots/, which `python tests/screenshots.py` makes again (a test run never
changes tracked files)."""
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


def open_page(browser, viewport, touch=False):
    page = browser.new_page(viewport=viewport, has_touch=touch)
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
    page = open_page(browser, PHONE, touch=True)
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


def run_and_wait(page, codecs=("cycle", "jpeg", "jpeg2000"), press=True):
    """Press the button (unless pressed already); wait for this run's plot (it comes after the
    table), then check the table's rows (in this order; in any order when `codecs` is a set). The
    previous run's plot is marked first: until the page has cleared it, the previous run's table
    and plot would otherwise pass for this run's."""
    from playwright.sync_api import expect

    if press:
        page.eval_on_selector_all("#rd-plot img", "imgs => imgs.forEach(i => i.dataset.stale = '1')")
        page.click("#run")
    page.locator("#rd-plot img:not([data-stale])").first.wait_for(timeout=240_000)
    rows = page.locator("#results-view tbody tr")
    expect(rows).to_have_count(len(codecs))
    shown = [rows.nth(i).get_attribute("data-codec") for i in range(len(codecs))]
    assert (set(shown) if isinstance(codecs, set) else shown) == (codecs if isinstance(codecs, set) else list(codecs))


def webp_copy(png: Path, width: int, quality: int = 72) -> None:
    """A small WebP copy of a screenshot beside it (for the README), at most `width` pixels wide."""
    img = Image.open(png).convert("RGB")
    if img.width > width:
        img = img.resize((width, round(img.height * width / img.width)), Image.Resampling.LANCZOS)
    img.save(png.with_suffix(".webp"), quality=quality, method=6)


def screenshot(page, name, width):
    """Full page to tests/artifacts/NAME.png, and a small WebP copy beside it (for the README)."""
    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(png), full_page=True)
    webp_copy(png, width)


def results_screenshot(page, name, width=960):
    """The results as the README shows them, to tests/artifacts/NAME.png and .webp: the verdict,
    the table and its legend (not the download links under them), at the page's own scale."""
    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / f"{name}.png"
    view = page.locator("#results-view")
    view.screenshot(path=str(png))
    top, legend = view.bounding_box(), page.locator("#results-view .legend").bounding_box()
    img = Image.open(png)
    img.crop((0, 0, img.width, min(img.height, round(legend["y"] + legend["height"] - top["y"]) + 4))).save(png)
    webp_copy(png, width, quality=80)


def table_rows(page) -> list[dict]:
    """The results table as shown: codec, bytes, PSNR and MS-SSIM as numbers, the row's state
    (matched or missed) and the columns holding a star."""
    return page.eval_on_selector_all("#results-view tbody tr", """trs => trs.map(tr => {
        const num = key => { const c = tr.querySelector('.c-' + key); if (!c) return null;
            const t = c.textContent.replace(/[★,×]/g, ''); return t === 'n/a' ? null : parseFloat(t); };
        return {codec: tr.dataset.codec, state: tr.className, bytes: num('bytes'), psnr: num('psnr'),
                ms_ssim: num('ms_ssim'), stars: [...tr.querySelectorAll('td.best')].map(td => td.className)};
    })""")


def check_verdict_and_table(page, match="size"):
    """The verdict agrees with the table: a codec competes when its bytes (same size) or its PSNR
    (same PSNR) are within the tolerance of ours, only those carry stars (never in the byte
    columns at the same size), the verdict's winner is the best of those on the table's numbers
    and is named in its words; at the same PSNR the rows rank by bytes."""
    from cycleapp.core.rate import TOLERANCE
    from cycleapp.evaluation.matching import QUALITY_TOLERANCE
    from cycleapp.evaluation.registry import labels

    rows = table_rows(page)
    ours = next(r for r in rows if r["codec"] == "cycle")
    for r in rows:
        if r["bytes"] is None:
            matched = False
        elif match == "size":
            matched = abs(r["bytes"] - ours["bytes"]) <= TOLERANCE * ours["bytes"]
        else:  # the page shows PSNR to 0.01 dB
            matched = abs(r["psnr"] - ours["psnr"]) <= QUALITY_TOLERANCE["psnr"] + 0.005
        assert r["state"] == ("matched" if matched else "missed"), r
        if not matched:
            assert not r["stars"], r  # no star on a missed match
        if match == "size":
            assert not [c for c in r["stars"] if "c-bytes" in c or "c-bpp" in c], r
    verdict = page.locator("#results-view .verdict")
    words = verdict.inner_text()
    competing = [r for r in rows if r["state"] == "matched"]
    if match == "size":
        for key, name in (("psnr", "PSNR"), ("ms_ssim", "MS-SSIM")):
            values = [r[key] for r in competing if r[key] is not None]
            if len(values) < 2 or len(set(values)) == 1:  # nothing to compare (MS-SSIM: n/a under 161 px)
                assert not verdict.get_attribute(f"data-winner-{key.replace('_', '-')}")
                continue
            best = max(values)
            winners = (verdict.get_attribute(f"data-winner-{key.replace('_', '-')}") or "").split()
            assert winners, (key, words)
            for w in winners:
                assert next(r for r in rows if r["codec"] == w)[key] == best, (key, w, rows)
            line = next(line for line in words.splitlines() if line.startswith(f"{name}:"))
            assert line.startswith(f"{name}: {labels()[winners[0]]}"), line
    else:
        assert [r["bytes"] for r in competing] == sorted(r["bytes"] for r in competing)
        assert rows[:len(competing)] == competing  # the misses last
        winner = verdict.get_attribute("data-winner-bytes")
        assert winner == competing[0]["codec"] and f"Smallest file: {labels()[winner]}" in words
    return rows


def check_downloads(page):
    """Every codec's file is offered, named by codec, with exactly its row's bytes, and decodes
    (Pillow, or cycleapp for .cyc) to the pixels the inspector shows (its PNG files)."""
    import io

    import cycleapp
    import cycleapp.imageio  # noqa: F401  (HEIF, AVIF and JPEG XL in Pillow)

    rows = {r["codec"]: r for r in table_rows(page)}
    links = page.eval_on_selector_all("#results-view .downloads a", "as => as.map(a => ({href: a.href, "
                                      "name: a.getAttribute('download'), codec: a.dataset.codec, kind: a.dataset.kind, "
                                      "bytes: +a.dataset.bytes}))")
    files = [a for a in links if a["kind"] == "file"]
    pngs = {a["codec"]: a for a in links if a["kind"] == "png"}
    assert sorted(a["codec"] for a in files) == sorted(c for c, r in rows.items() if r["bytes"] is not None)
    inspector = page.locator("#inspector").inner_html()
    for a in files:
        data = page.request.get(a["href"]).body()
        assert len(data) == a["bytes"] == rows[a["codec"]]["bytes"], a
        extension = {"cycle": ".cyc", "jpeg": ".jpg", "jpeg2000": ".j2k", "webp": ".webp", "heif": ".heic",
                     "avif": ".avif", "jxl": ".jxl"}[a["codec"]]
        assert a["name"].endswith(extension) and (a["codec"] in a["name"] or a["codec"] == "cycle"), a
        pixels = cycleapp.decode(data) if extension == ".cyc" else \
            np.array(Image.open(io.BytesIO(data)).convert("RGB"))
        png = pngs[a["codec"]]
        assert png["href"].split("gradio_api/file=")[1] in inspector  # the very file the inspector shows
        shown = np.array(Image.open(io.BytesIO(page.request.get(png["href"]).body())))
        assert np.array_equal(pixels, shown), a["codec"]
    return files


def record_status(page):
    """From now on, every text the status area shows is kept (read with `seen_status`): the
    progress lines of a run come and go faster than a test can poll."""
    page.evaluate("""() => { window.statusSeen = [];
        const s = document.getElementById('status');
        const keep = () => { const t = s.innerText; if (t && window.statusSeen.at(-1) !== t) window.statusSeen.push(t); };
        new MutationObserver(keep).observe(s, {subtree: true, childList: true, characterData: true}); }""")


def seen_status(page) -> list[str]:
    return page.evaluate("window.statusSeen")


def check_progress(page, count: int):
    """The status said what was being done, codec by codec ('Matching AVIF ... : 3 of 6 codecs done')."""
    seen = "\n".join(seen_status(page))
    assert "Compressing with CycleCodec" in seen, seen
    assert re.search(rf"Matching [A-Z].* to the same (file size|PSNR|MS-SSIM): \d of {count} codecs done", seen), seen


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
    check_verdict_and_table(desktop)
    assert len(check_downloads(desktop)) == 3
    screenshot(desktop, "app-desktop", 960)


def test_zoom_is_synchronised(desktop):
    """Zoom or pan one view: every view shows the same region of the image."""
    desktop.click(".insp [data-mode=grid]")
    assert desktop.locator(".insp-view").count() == 4  # the original, CycleCodec, JPEG, JPEG 2000
    before = regions(desktop)
    assert len(set(before)) == 1
    assert desktop.locator(".insp-pick").is_hidden()  # Left and Right choose nothing here
    view = desktop.locator(".insp-view").nth(1)
    view.scroll_into_view_if_needed()
    box = view.bounding_box()
    desktop.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.4)
    # A wheel notch is a fine step (2^(1/4)), however large the wheel's delta: ten notches, 5.7x.
    scale = float(view.get_attribute("data-scale"))
    desktop.mouse.wheel(0, -100)
    desktop.wait_for_function("([v, s]) => +v.dataset.scale !== s", arg=[view.element_handle(), scale])
    assert 1.15 < float(view.get_attribute("data-scale")) / scale < 1.25
    desktop.mouse.wheel(0, -1000)  # a fast spin's one big event: still one notch's step at most
    desktop.wait_for_timeout(200)
    assert float(view.get_attribute("data-scale")) / scale < 1.25 ** 2
    for _ in range(8):
        desktop.mouse.wheel(0, -100)
    desktop.wait_for_timeout(200)
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
    assert desktop.locator(".insp-pick").is_hidden()
    desktop.click(".insp [data-mode=slider]")
    assert desktop.locator(".insp-pick").is_visible()
    desktop.select_option(".insp-right", "jpeg")
    assert desktop.eval_on_selector_all(".insp-view", "vs => vs.map(v => v.dataset.source)") == ["original|jpeg"]
    view = desktop.locator(".insp-view").first
    assert view.get_attribute("data-scale") == "1" and view.get_attribute("data-centre") == centre
    desktop.click(".insp [data-mode=side]")


def test_phone_run_and_main_columns_visible(phone):
    upload(phone, EXAMPLES / "kodim04.png")
    phone.evaluate("window.scrollTo(0, 0)")
    record_status(phone)
    phone.click("#run")
    # As the run starts, the button waits and the status (below the inputs on a phone) comes into view.
    from playwright.sync_api import expect

    expect(phone.locator("#run")).to_be_disabled()
    box = phone.locator("#status").bounding_box()
    assert 0 <= box["y"] < PHONE["height"], box
    run_and_wait(phone, press=False)
    expect(phone.locator("#run")).to_be_enabled()
    check_verdict_and_table(phone)
    assert len(check_downloads(phone)) == 3
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for key in ("codec", "bytes", "bpp", "psnr", "ms_ssim"):
        box = phone.locator(f"#results-view thead th.c-{key}").bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (key, box)
    check_progress(phone, 2)
    # The plot fits the phone, with no label over its title.
    plot = phone.locator("#rd-plot img").first.bounding_box()
    assert plot["x"] >= 0 and plot["x"] + plot["width"] <= PHONE["width"], plot
    assert not phone.locator("#rd-plot [data-testid='block-label']").is_visible()
    # What the phone shows once the run is done: the status, the verdict and the table, one screen.
    phone.locator("#status").evaluate("el => window.scrollTo(0, el.getBoundingClientRect().top + window.scrollY - 8)")
    ARTIFACTS.mkdir(exist_ok=True)
    phone.screenshot(path=str(ARTIFACTS / "app-phone.png"))
    webp_copy(ARTIFACTS / "app-phone.png", 390, quality=80)
    check_tips_on_tap(phone)


def tip_shown(page) -> dict:
    """The focused element's class and its tip as drawn (the ::after box's words and position)."""
    return page.evaluate("""() => { const el = document.activeElement, after = getComputedStyle(el, '::after');
        return {cls: String(el.className), content: after.content, position: after.position,
                display: after.display}; }""")


def check_tips_on_tap(page):
    """A tap on a column's header, or on a setting, shows what it means (a title never shows on a
    touch screen); a tap elsewhere hides it again."""
    page.locator("#results-view thead th.c-psnr").tap()
    shown = tip_shown(page)
    assert "c-psnr" in shown["cls"] and "decoded pixels" in shown["content"], shown
    assert shown["position"] == "fixed" and shown["display"] != "none", shown
    page.screenshot(path=str(ARTIFACTS / "app-phone-tip.png"))  # to see it drawn
    page.locator("#results-view td.c-setting .explained").first.tap()
    shown = tip_shown(page)
    assert "explained" in shown["cls"] and "code size" in shown["content"], shown
    page.locator("#results-view .legend").tap()
    assert "tip" not in tip_shown(page)["cls"]


def same_quality_run(page, path, example: str, box: tuple) -> None:
    """A crop of an example compared at the same PSNR with JPEG and JPEG 2000: the verdict and the
    table agree, the files offered are the table's."""
    Image.open(EXAMPLES / f"{example}.png").convert("RGB").crop(box).save(path)
    upload(page, path)
    page.check("#match input[value='psnr']")
    run_and_wait(page, {"cycle", "jpeg", "jpeg2000"})
    check_verdict_and_table(page, "psnr")
    check_downloads(page)


def test_phone_same_quality(phone, tmp_path):
    """At the same PSNR on a phone: the verdict in bytes agrees with the table, the files too."""
    same_quality_run(phone, tmp_path / "hat.png", "kodim04", (150, 100, 470, 340))
    phone.check("#match input[value='size']")


def test_same_quality_table_ranks_by_bytes(desktop, tmp_path):
    """The same PSNR: each matched codec within 0.15 dB of ours, the rows ranked by bytes, the
    verdict in bytes naming the smallest; the files offered are still the table's."""
    same_quality_run(desktop, tmp_path / "parrots.png", "kodim23", (200, 60, 520, 300))
    assert "x the bytes" in desktop.locator("#results-view .verdict").inner_text()
    desktop.check("#match input[value='size']")


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
    """First a success on a 192x128 image, whose .cyc file (about 240 bytes) is smaller than any
    JPEG can be (460): JPEG misses the size, is marked, left out of the verdict (which says so)
    and never starred. Then a file that is no image: the results go, the message stays."""
    from playwright.sync_api import expect

    small = tmp_path / "small.png"
    Image.open(EXAMPLES / "kodim04.png").convert("RGB").crop((300, 200, 492, 328)).save(small)
    upload(desktop, small)
    run_and_wait(desktop)
    rows = {r["codec"]: r for r in check_verdict_and_table(desktop)}
    assert rows["jpeg"]["state"] == "missed" and not rows["jpeg"]["stars"]
    words = desktop.locator("#results-view .verdict").inner_text()
    assert "Not compared" in words and "JPEG (+" in words
    check_downloads(desktop)
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
    time.sleep(11)  # a toast fades (gr.Error: after 10 s); the status stays until the next run
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


def test_queue_place_shows_in_the_status(browser, desktop, tmp_path):
    """While other visitors' comparisons run, the status area shows this one's place in the queue,
    on a line of its own under the words that explain it (not over them)."""
    from gradio_client import Client, handle_file
    from gradio_client.utils import Status
    from playwright.sync_api import expect

    upload(desktop, EXAMPLES / "kodim23.png")
    other = Client(browser.app_url, verbose=False)
    # Photos the app has not measured yet (the app keeps what it measured: an example shown by an
    # earlier test would be answered at once, and the queue gone before this page joins it).
    paths = []
    for i in range(2):
        rgb = np.array(Image.open(EXAMPLES / "kodim04.png").convert("RGB"))
        rgb[0, 0] = (rgb[0, 0].astype(int) + 50 * (i + 1)) % 256
        paths.append(tmp_path / f"other-{i}.png")
        Image.fromarray(rgb).save(paths[-1])
    jobs = [other.submit(handle_file(str(path)), "medium", ["jpeg", "jpeg2000"], api_name="/compare")
            for path in paths]
    deadline = time.time() + 60
    while jobs[0].status().code not in (Status.PROCESSING, Status.ITERATING) and time.time() < deadline:
        time.sleep(0.1)
    desktop.click("#run")
    status = desktop.locator("#status")
    # Checked in one step of the page (the queue moves fast): the place, the words, the line below them.
    desktop.wait_for_function("""() => {
        const status = document.getElementById('status'), line = status.querySelector('.progress-text');
        const words = [...status.querySelectorAll('.status li')].pop();
        if (!line || !words || !/queue: [1-9]\\d*\\/\\d+/.test(line.textContent)) return false;
        if (!status.textContent.includes('your place in the queue')) return false;
        const a = line.getBoundingClientRect(), b = words.getBoundingClientRect();
        return a.top >= b.bottom;
    }""", timeout=30_000)
    expect(status).to_contain_text("Done in", timeout=180_000)
    for job in jobs:
        job.result()
    other.close()


def test_all_six_codecs(desktop, tmp_path):
    """All six codecs: the status says which is being matched as it goes, the verdict agrees with
    the table, each codec's real file is offered with its row's bytes and decodes to the pixels
    shown; the button waits while the run works."""
    from playwright.sync_api import expect

    from cycleapp.evaluation.registry import labels

    six = ["jpeg", "jpeg2000", "webp", "heif", "avif", "jxl"]
    upload(desktop, EXAMPLES / "kodim23.png")
    for name in six:
        desktop.locator("#codecs").get_by_label(labels()[name], exact=True).check()
    record_status(desktop)
    desktop.eval_on_selector_all("#rd-plot img", "imgs => imgs.forEach(i => i.dataset.stale = '1')")
    desktop.click("#run")
    expect(desktop.locator("#run")).to_be_disabled()
    run_and_wait(desktop, ["cycle", *six], press=False)
    expect(desktop.locator("#run")).to_be_enabled()
    check_progress(desktop, 6)
    check_verdict_and_table(desktop)
    assert len(check_downloads(desktop)) == sum(r["bytes"] is not None for r in table_rows(desktop))
    # Every setting says what it means on hover; sizes are in KB of 1000 bytes beside the bytes.
    titles = desktop.eval_on_selector_all("#results-view td.c-setting", "tds => tds.map(td => td.title)")
    assert len(titles) == 7 and all(len(t) > 20 for t in titles), titles
    for size in desktop.locator("#results-view .downloads .size").all_inner_texts():
        kb, exact = re.match(r"([\d.,]+) KB \(([\d,]+) bytes\)", size).groups()
        assert abs(float(kb.replace(",", "")) - int(exact.replace(",", "")) / 1000) <= 0.05 * float(kb.replace(",", "")) + 0.01
    results_screenshot(desktop, "app-verdict")
    # The same six at the same PSNR: the table reads in bytes, ranked by them.
    desktop.check("#match input[value='psnr']")
    run_and_wait(desktop, {"cycle", *six})
    check_verdict_and_table(desktop, "psnr")
    assert "x the bytes" in desktop.locator("#results-view .verdict").inner_text()
    results_screenshot(desktop, "app-same-quality")
    desktop.check("#match input[value='size']")
    for name in six[2:]:
        desktop.locator("#codecs").get_by_label(labels()[name], exact=True).uncheck()
