"""Speed benchmark of the app, measured from the API as a user's script sees it (not a test).

    .venv/bin/python tests/bench_app.py [--runs 5] [--code-size medium]

Starts `python app.py`, then times /compare on a 768x512 image with JPEG and JPEG 2000.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_server import running_app  # noqa: E402
from conftest import EXAMPLES  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--code-size", default="medium")
    args = p.parse_args()
    from gradio_client import Client, handle_file

    t0 = time.perf_counter()
    with running_app() as url:
        print(f"app started in {time.perf_counter() - t0:.1f} s")
        client = Client(url, verbose=False)
        times = []
        for i in range(args.runs + 1):
            t = time.perf_counter()
            client.predict(handle_file(str(EXAMPLES / "kodim23.png")), args.code_size, ["jpeg", "jpeg2000"],
                           api_name="/compare")
            if i:  # the first call warms up
                times.append(time.perf_counter() - t)
        print(f"/compare, 768x512, JPEG + JPEG 2000, code size {args.code_size}: "
              f"median {statistics.median(times):.2f} s, max {max(times):.2f} s over {args.runs} runs")


if __name__ == "__main__":
    main()
