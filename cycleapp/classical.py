"""The classical codecs by name, for code written before the registry (`app.py`).

New code reads `cycleapp.codecs` (what a codec is, and the registry) and `cycleapp.matching`
(matching one to a file size); this module only re-exports them.
"""
from __future__ import annotations

from .codecs import CLASSICAL, PillowCodec as ClassicalCodec  # noqa: F401
from .matching import TOLERANCE, Match, match_size  # noqa: F401

CODECS: dict[str, ClassicalCodec] = {c.name: c for c in CLASSICAL}
