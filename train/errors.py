"""Errors of the training tools, and how their command lines report them.

The tools' functions raise `TrainError` (a missing or damaged file, an option out of range), which a
caller can catch; only the command line turns one into a single `error:` line on stderr and exit
status 1 (`command`, around each tool's `main`), as `python -m train.fit ...` has always done.
"""
from __future__ import annotations

import functools


class TrainError(Exception):
    """Bad input to a training tool, said in one line (without the `error: ` that the command adds)."""


def command(main):
    """A tool's `main(argv)`, whose TrainError ends the process with one `error:` line on stderr and
    exit status 1 (a SystemExit with the message, which Python prints and exits 1 on)."""

    @functools.wraps(main)
    def run(argv=None):
        try:
            return main(argv)
        except TrainError as e:
            raise SystemExit(f"error: {e}") from None

    return run


def first_line(error: Exception) -> str:
    """An exception as one short line (torch's unpickling errors run over many lines)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__
