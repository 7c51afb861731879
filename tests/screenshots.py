"""Make the screenshots that the README and docs/usage.md show again (tests/screenshots/*.webp).

    .venv/bin/python tests/screenshots.py

Runs the browser tests that take them (tests/test_browser.py: the app in headless Chromium, at
1440x900 and on a 390x844 phone), which write them to tests/artifacts/, then copies the WebP files
here. A test run alone never changes tracked files; this script is how they change.
"""
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ARTIFACTS, SHOTS = TESTS / "artifacts", TESTS / "screenshots"
# name: the browser test that writes it (app-verdict: six codecs at the same size; app-same-quality:
# the same six at the same PSNR; app-desktop: the whole page; app-phone: a phone's screen of results)
SHOWN = {"app-verdict": "test_all_six_codecs", "app-same-quality": "test_all_six_codecs",
         "app-desktop": "test_desktop_run", "app-phone": "test_phone_run_and_main_columns_visible"}
MAX_BYTES = 120_000


def main() -> None:
    for name in SHOWN:
        (ARTIFACTS / f"{name}.webp").unlink(missing_ok=True)
    tests = sorted(set(SHOWN.values()))
    subprocess.run([sys.executable, "-m", "pytest", str(TESTS / "test_browser.py"), "-x", "-q", "-k",
                    " or ".join(tests)], check=True, cwd=TESTS.parent)
    for name in SHOWN:
        made = ARTIFACTS / f"{name}.webp"
        size = made.stat().st_size
        if size > MAX_BYTES:
            sys.exit(f"{made} is {size:,} bytes, over {MAX_BYTES:,}: not copied")
        shutil.copyfile(made, SHOTS / made.name)
        print(f"{SHOTS / made.name}: {size:,} bytes")


if __name__ == "__main__":
    main()
