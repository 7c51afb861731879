"""Real .cyc files: bit-exact round trips, honest sizes, clear errors."""
import numpy as np
import pytest
import torch
from conftest import EXAMPLES, at_thread_counts

from cycleapp.core import checkpoint, codec
from cycleapp.core.bitstream import BitstreamError, CycFile
from cycleapp.imageio import load_rgb


@pytest.mark.parametrize("h,w", [(1, 1), (1, 37), (15, 17), (33, 20), (48, 16), (64, 40)])
def test_round_trip_is_bit_exact_for_any_size(ckpt, noise_image, h, w):
    rgb = noise_image(h, w)
    data = codec.encode(ckpt, rgb)
    assert codec.encode(ckpt, rgb) == data  # same image, same bytes
    decoded = codec.decode(data, ckpt)
    assert decoded.shape == (h, w, 3) and decoded.dtype == np.uint8
    assert np.array_equal(decoded, codec.decode(data, ckpt))  # same pixels every time
    assert np.array_equal(decoded, codec.reconstruct(ckpt, rgb))  # what the model itself gives


def test_photo_round_trip_and_size(ckpt, photo):
    data = codec.encode(ckpt, photo)
    cyc = CycFile.from_bytes(data)
    assert (cyc.width, cyc.height) == (768, 512)
    assert cyc.code_shape == (ckpt.channels, 32, 48)
    assert len(data) < photo.nbytes / 8  # it really compresses
    assert np.array_equal(codec.decode(data), codec.reconstruct(ckpt, photo))  # checkpoint found by id


def test_portrait(ckpt, noise_image):
    rgb = noise_image(80, 30)
    assert np.array_equal(codec.decode(codec.encode(ckpt, rgb), ckpt), codec.reconstruct(ckpt, rgb))


def test_bpp_is_whole_file_bytes(ckpt, photo):
    from cycleapp.core.learned import CycleCodec
    from cycleapp.evaluation.measure import measure

    result = measure(CycleCodec(ckpt), photo)
    row = result.row()
    assert row["bytes"] == len(result.data)
    assert row["bpp"] == 8 * len(result.data) / (768 * 512)


def test_header_fields_are_checked(ckpt, photo):
    data = bytearray(codec.encode(ckpt, photo))
    with pytest.raises(BitstreamError, match="magic"):
        codec.decode(b"GIF89a" + bytes(data[6:]), ckpt)
    with pytest.raises(BitstreamError, match="truncated"):
        codec.decode(bytes(data[:-10]), ckpt)
    with pytest.raises(BitstreamError, match="truncated"):
        codec.decode(bytes(data[:20]), ckpt)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    with pytest.raises(BitstreamError, match="checksum"):
        codec.decode(bytes(flipped), ckpt)
    version = bytearray(data)
    version[3] = 99
    with pytest.raises(BitstreamError, match="version"):
        codec.decode(bytes(version), ckpt)


def test_absurd_size_in_a_well_formed_header_is_refused(ckpt, photo):
    cyc = CycFile.from_bytes(codec.encode(ckpt, photo))
    cyc.width = cyc.height = 60_000  # a valid checksum does not make a 3.6-gigapixel image plausible
    with pytest.raises(BitstreamError, match="image size"):
        codec.decode(cyc.to_bytes(), ckpt)


def test_other_checkpoint_is_a_clear_error(ckpt, photo):
    from cycleapp.core import checkpoint

    data = codec.encode(ckpt, photo)
    other = checkpoint.by_name(checkpoint.available()[1].stem)
    with pytest.raises(ValueError, match="made by checkpoint"):
        codec.decode(data, other)
    foreign = CycFile.from_bytes(data)
    foreign.checkpoint_id = bytes(8)
    with pytest.raises(ValueError, match="not installed"):
        codec.decode(foreign.to_bytes())


def test_tables_are_stored_not_recomputed(ckpt, photo, tmp_path):
    """Coding uses the exported tables: they match what the density gives (to float32), and a copy
    of the checkpoint whose stored table choices differ, with the same weights, codes differently,
    while recomputing tables from the density is never called."""
    import json
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from cycleapp.core import checkpoint

    dc, ac, index, predictor, activity = ckpt.model.densities[0].tables()
    # to float32 only: another CPU's vector math may round the density's last bit differently, which is
    # why coding never recomputes the tables
    np.testing.assert_allclose(dc.double().numpy(), ckpt.tables.dc_probabilities, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ac.double().numpy(), ckpt.tables.ac_probabilities, rtol=1e-4, atol=1e-6)
    assert np.array_equal(index.numpy(), ckpt.tables.index)
    assert np.array_equal(predictor.numpy(), ckpt.tables.predictor.numpy())
    assert np.array_equal(activity.numpy(), ckpt.tables.activity.numpy())
    assert len(np.unique(ckpt.tables.index)) > 8  # the contexts pick different tables

    source = checkpoint.available()[0]
    tensors = load_file(str(source))
    tensors["tables.index"] = (tensors["tables.index"] + 1).clamp(max=int(tensors["tables.index"].max()))
    save_file(tensors, str(tmp_path / "other.safetensors"))
    shutil.copy(source.with_name(checkpoint.TRANSFORM), tmp_path)
    meta = json.loads(source.with_suffix(".json").read_text())
    meta["id"] = checkpoint.checkpoint_id((tmp_path / checkpoint.TRANSFORM).read_bytes(),
                                          (tmp_path / "other.safetensors").read_bytes()).hex()
    (tmp_path / "other.json").write_text(json.dumps(meta))
    other = checkpoint.load_checkpoint(tmp_path / "other.safetensors")
    for density in (ckpt.model.densities[0], other.model.densities[0]):
        density.tables = lambda: pytest.fail("coding tables were recomputed from the density")
    try:
        rgb = np.ascontiguousarray(photo[:64, :96])
        assert all(torch.equal(v, ckpt.model.state_dict()[k]) for k, v in other.model.state_dict().items())
        data, other_data = codec.encode(ckpt, rgb), codec.encode(other, rgb)
        assert data[12:] != other_data[12:]  # not only the checkpoint id in the header
        assert np.array_equal(codec.decode(other_data, other), codec.reconstruct(other, rgb))
        assert np.array_equal(codec.decode(data, ckpt), codec.reconstruct(ckpt, rgb))
    finally:
        del ckpt.model.densities[0].tables


def test_shipped_checkpoints_cover_the_range_in_little_space():
    """At least five code sizes whose Kodak bpp, as recorded at export (real files), runs from under
    0.15 to over 0.7 (rate control reaches between and beyond them); the transform they share is
    stored once, with the 256 AC coding tables (1 MB) that they share too, so all of it fits 8 MB
    (the limit is 10 MB a file and 50 MB in all)."""
    import json

    from cycleapp.core import checkpoint

    paths = checkpoint.available()
    assert len(paths) >= 5
    files = list(checkpoint.checkpoint_dir().iterdir())
    assert sorted(p.name for p in files) == sorted([checkpoint.TRANSFORM] + [p.name for p in paths]
                                                   + [p.with_suffix(".json").name for p in paths])
    assert sum(p.stat().st_size for p in files) <= 8_000_000
    bpp = [json.loads(p.with_suffix(".json").read_text())["kodak"]["bpp"] for p in paths]
    assert bpp == sorted(bpp) and bpp[0] < 0.15 and bpp[-1] > 0.7


def test_a_code_size_needs_the_transform_it_was_exported_with(tmp_path):
    """The shared transform is a separate file: a code size without it, or beside another one, is
    refused with a clear error instead of decoding with the wrong weights."""
    import shutil

    from safetensors.torch import load_file, save_file

    from cycleapp.core import checkpoint

    source = checkpoint.available()[0]
    shutil.copy(source, tmp_path)
    shutil.copy(source.with_suffix(".json"), tmp_path)
    with pytest.raises(ValueError, match="has no transform.safetensors"):
        checkpoint.load_checkpoint(tmp_path / source.name)
    transform = load_file(str(source.with_name(checkpoint.TRANSFORM)))
    transform["down1.weight"] = transform["down1.weight"] * 0.5
    save_file(transform, str(tmp_path / checkpoint.TRANSFORM))
    with pytest.raises(ValueError, match="exported with another transform"):
        checkpoint.load_checkpoint(tmp_path / source.name)
    shutil.copy(source.with_name(checkpoint.TRANSFORM), tmp_path)
    checkpoint.load_checkpoint(tmp_path / source.name)  # the pair as exported loads
    other = checkpoint.available()[-1]
    shutil.copy(other, tmp_path / source.name)  # another size's file under this size's JSON
    with pytest.raises(ValueError, match="damaged or not the file its JSON describes"):
        checkpoint.load_checkpoint(tmp_path / source.name)


def test_a_checkpoint_of_an_earlier_format_or_with_foreign_tables_asks_for_a_new_export(tmp_path):
    """A code size exported before the code sizes shared their AC tables (format 7's first export:
    its own copy in its file, none in the transform's) loads as a clear error naming what is
    missing, not as a damaged file; so do shared tables that are not this release's (`ac_tables`),
    whatever the file's hashes say."""
    import hashlib
    import json

    from safetensors.torch import load_file, save_file

    from cycleapp.core import checkpoint
    from cycleapp.core.entropy import ac_tables

    source = checkpoint.available()[0]

    def export(transform: dict, own: dict):
        save_file(transform, str(tmp_path / checkpoint.TRANSFORM))
        save_file(own, str(tmp_path / source.name))
        shared, data = (tmp_path / checkpoint.TRANSFORM).read_bytes(), (tmp_path / source.name).read_bytes()
        meta = json.loads(source.with_suffix(".json").read_text())
        meta.update(transform_sha256=hashlib.sha256(shared).hexdigest(),
                    id=checkpoint.checkpoint_id(shared, data).hex())
        (tmp_path / source.with_suffix(".json").name).write_text(json.dumps(meta))
        return tmp_path / source.name

    transform, own = load_file(str(source.with_name(checkpoint.TRANSFORM))), load_file(str(source))
    assert checkpoint.load_checkpoint(export(transform, own)).name == source.stem  # as exported
    earlier = {k: v for k, v in transform.items() if k != checkpoint.SHARED_TABLES}
    with pytest.raises(ValueError, match=r"from an earlier format \(no tables.ac\): export its run again"):
        checkpoint.load_checkpoint(export(earlier, {**own, "tables.ac": ac_tables()}))
    zero_tails = ac_tables()
    zero_tails[:, 0] = 0  # format 7's first tables: far tails of exactly zero
    nan = ac_tables()
    nan[7, 500] = float("nan")
    for foreign in (zero_tails, nan, ac_tables().half(), ac_tables()[None]):  # the last broadcasts
        with pytest.raises(ValueError, match="AC coding tables that are not this release's"):
            checkpoint.load_checkpoint(export({**earlier, checkpoint.SHARED_TABLES: foreign}, own))


def test_rdoq_only_moves_values_toward_zero(ckpt):
    """The encoder's rounding: each value is round(y) or one step toward zero; the DC is plain;
    an infinite distortion weight gives back plain rounding."""
    import torch

    y = torch.randn(1, ckpt.channels, 6, 7, generator=torch.Generator().manual_seed(0)) * 3
    plain = ckpt.tables.clamp(torch.round(y))
    assert torch.equal(ckpt.tables.quantize(y, torch.full((ckpt.channels,), float("inf"))), plain)
    q = ckpt.tables.quantize(y, torch.full((ckpt.channels,), 0.5, dtype=torch.float64))
    assert torch.equal(q[:, 0], plain[:, 0])
    moved = q != plain
    assert moved.any()
    assert torch.equal(q[moved], plain[moved] - torch.sign(plain[moved]))


def test_rdoq_saves_bytes_for_little_distortion(ckpt, photo):
    """Against plain rounding on a photo: a smaller file, at most 0.4 dB lower PSNR."""
    from cycleapp.evaluation.metrics import psnr

    rdoq = codec.encode(ckpt, photo)
    plain = codec.encode(ckpt, photo, rdoq_weight=float("inf"))
    assert len(rdoq) < 0.98 * len(plain)
    assert psnr(photo, codec.decode(rdoq, ckpt)) > psnr(photo, codec.decode(plain, ckpt)) - 0.4


def test_too_large_an_image_is_refused_before_any_work(ckpt):
    """A side over 1,048,560 pixels (the code's side is stored as u16) is a clear ValueError at once."""
    import time

    start = time.perf_counter()
    for shape in [(1, 1_048_561, 3), (1_048_561, 1, 3)]:
        with pytest.raises(ValueError, match="out of range"):
            codec.encode(ckpt, np.zeros(shape, np.uint8))
    assert time.perf_counter() - start < 0.5


def test_older_format_versions_are_a_clear_error(ckpt, noise_image):
    import struct
    import zlib

    data = bytearray(codec.encode(ckpt, noise_image(20, 30)))
    data[3] = 2  # version 2 files: before the sealed coder
    body = bytes(data[:-4])
    with pytest.raises(BitstreamError, match="version 2 is from an early CycleCodec.*git checkout ad57aa5"):
        codec.decode(body + struct.pack("<I", zlib.crc32(body)), ckpt)


def test_header_edits_with_a_recomputed_checksum_are_refused(ckpt, photo):
    """The payload is bound to its header: a width or a step shift edited (the code shape still
    consistent, the CRC recomputed) no longer decodes as a crop or with other steps."""
    cyc = CycFile.from_bytes(codec.encode(ckpt, np.ascontiguousarray(photo[:64, :96])))
    for field, value in [("width", 90), ("height", 50), ("step_shift", 1)]:
        edited = CycFile.from_bytes(cyc.to_bytes())
        setattr(edited, field, value)
        with pytest.raises(BitstreamError, match="does not end where its encoder began"):
            codec.decode(edited.to_bytes(), ckpt)
    inconsistent = CycFile.from_bytes(cyc.to_bytes())
    inconsistent.width = 200  # 13 code columns, the header says 6
    with pytest.raises(BitstreamError, match="code shape"):
        codec.decode(inconsistent.to_bytes(), ckpt)


def test_a_file_decodes_to_the_same_pixels_on_any_number_of_threads():
    """The transform's float sums depend on how they are split across threads; at 2 and 3 threads
    `huge` made 6 other values of kodim04 than at 1 before every decode ran on one thread."""
    rgb = load_rgb(EXAMPLES / "kodim04.png")
    ckpt = checkpoint.by_name("huge")
    data = codec.encode(ckpt, rgb)
    decoded = at_thread_counts(lambda: codec.decode(data, ckpt))
    assert np.array_equal(decoded[1], decoded[2]) and np.array_equal(decoded[1], decoded[3])


@pytest.mark.parametrize("submit", ["plain", "as caller"])
def test_work_handed_to_a_thread_runs_with_the_caller_s_threads(submit):
    """While another thread decodes (`one_thread`: PyTorch's global setting lowered to 1), a new
    worker thread would start at 1 thread; `submit_as_caller` gives it the caller's count, so an
    encode made beside a decode computes the code the caller would (rate control's second base)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    before = torch.get_num_threads()
    inside, leave = threading.Event(), threading.Event()

    def decoding():
        with codec.one_thread():
            inside.set()
            leave.wait(30)

    torch.set_num_threads(2)
    other = threading.Thread(target=decoding)
    other.start()
    try:
        inside.wait(30)
        with ThreadPoolExecutor(1) as pool:
            if submit == "plain":
                assert pool.submit(torch.get_num_threads).result() == 1  # what the helper is for
            else:
                assert codec.submit_as_caller(pool, torch.get_num_threads).result() == 2
    finally:
        leave.set()
        other.join()
        torch.set_num_threads(before)
