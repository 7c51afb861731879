"""Classical codecs at a matched file size."""
import numpy as np
import pytest

from cycleapp.core.rate import TOLERANCE, match_size
from cycleapp.evaluation import registry


@pytest.mark.parametrize("name", ["jpeg", "jpeg2000"])
@pytest.mark.parametrize("target", [8000, 20000, 45000])
def test_matched_within_three_percent(photo, name, target):
    m = match_size(registry.get(name), photo, target)
    assert abs(len(m.data) - target) <= TOLERANCE * target, (name, target, len(m.data))
    assert m.within_tolerance and m.note == ""
    decoded = registry.get(name).decode(m.data)
    assert decoded.shape == photo.shape and decoded.dtype == np.uint8
    assert len(registry.get(name).encode(photo, m.setting)) == len(m.data)  # the setting reproduces the file


def test_unreachable_target_says_so(photo):
    m = match_size(registry.get("jpeg"), photo, 500)
    assert not m.within_tolerance
    assert "cannot go below" in m.note and str(len(m.data)) in m.note


@pytest.mark.parametrize("name", ["webp", "heif", "avif"])
def test_other_codecs_round_trip(photo, name):
    crop = np.ascontiguousarray(photo[:128, :192])
    data = registry.get(name).encode(crop, 50)
    decoded = registry.get(name).decode(data)
    assert decoded.shape == crop.shape
    assert np.abs(decoded.astype(int) - crop).mean() < 20  # and it resembles the input
