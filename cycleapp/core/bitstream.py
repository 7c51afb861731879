"""The `.cyc` container: everything needed to decode, and a check that it arrived intact.

Layout (little-endian):
    magic b"CYC" | version u8 | checkpoint id 8 bytes | width u32 | height u32 |
    code channels u16 | code height u16 | code width u16 | step shift i8 | payload length u32 |
    payload (entropy-coded, constriction ANS words) | CRC-32 of all preceding bytes u32

The step shift (format version 2) scales the quantisation steps of every channel after the DC by
GRID_RATIO ** (shift / STEP_UNITS): the encoder's rate control between and beyond the code sizes.

The seal (format version 3): the entropy coder starts from a state derived from the header
(`CycFile.seal`) instead of an empty one, and the decoder must end in exactly that state. So a
payload that runs dry, one that leaves data behind, and a payload under an edited header (with its
CRC recomputed) are all refused instead of decoding to some image.

The DC row by row (format version 4): the payload codes the DC residuals a row at a time, each under
the density of its context from the row above (`entropy.dc_contexts`); the container is unchanged.

Tables adapted to the image (format version 5): the payload starts with a move of each channel's
coding tables (`entropy.CodingTables.adaptation`); the container is unchanged.

Each channel's own contexts (format version 6): a symbol's table is chosen from its own channel's
neighbours and the activity-weighted channels below it (`entropy.contexts`); the container
is unchanged.

Tables of four shapes (format version 7): each (channel, context)'s table is a generalised Gaussian
of one of four shapes, the Laplace among them (`entropy.ac_tables`); the container is unchanged.

Four passes (format version 8): each channel group is decoded in four passes over a 2x2 pattern of
positions instead of two, the later ones reading more of their own channel's decoded neighbours
(`entropy.phases`); the container is unchanged.

An enhancement layer (format version 9): after the learned code's payload length, the layer's kind
u8 (1: the pixel-domain residual of `residual`, for near-lossless and lossless files; 2: the
transform-domain residual of `dct_layer`, for lossy files above the presets), its step u16 (in
sixteenths of a pixel value, never 0) and the length u32 of a second payload; then the two payloads.
The layer's coder is sealed like the first's, from the same header with a different salt. A file without that layer is still
written as version 8, so the presets' files are the same bytes as before.

Format version 10: the same container with two more kinds of layer: 3, the predicted pixel layer
of `predicted_layer`, for near-lossless and lossless files, and 4, the predicted transform-domain
layer of `dct_predicted_layer`, for lossy files above the presets. A layer's kind says the version
a file of it carries (`LAYER_KINDS`), so a release that does not know a kind says a newer release
wrote the file; kinds 1 and 2 are still written (by a caller that asks for them) as version 9.

Format version 11: the same container with one more kind of layer: 5, the adaptive transform layer
of `adaptive_layer` (8x8, 16x16 and 32x32 DCTs chosen region by region), for lossy files above the
presets; kinds 3 and 4 are still written (kind 4 by a caller that asks for it) as version 10.

Format version 12: one more kind of layer, 6: the predicted pixel layer of kind 3 with no learned
code beneath it (its base is a flat grey of 128), for near-lossless and lossless files: the learned
base saved nothing there (without it the files were 0.1 to 1.3 % smaller on average, CHANGELOG
0.12.0) and its transform took a third of the time. Such a file names no checkpoint: its checkpoint
id is 8 zero bytes, its code shape (0, 0, 0), its step shift 0 and its first payload empty
(`STANDALONE`); kind 3 is still written by a caller that asks for it, as version 10.

Format version 13: one more kind of layer, 7: kind 5's layer over a base whose transform runs in
tiles of a fixed rule that splits a 2K photo in two (`codec.even_tiles`), made side by side on two
threads: half the time of the base of format 11, whose one tile's pixels the new tiles do not give
to the last bit. For lossy files above the presets; kind 5 is still written by a caller that asks
for it, as version 11.

From version 8 on, every version stays readable by every later release (docs/release-policy.md):
`READABLE` only grows. Files of versions 1 to 7 name the last commit that wrote them
(`OLDER_RELEASES`).
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"CYC"
VERSION = 13  # the newest version this build writes
READABLE = (8, 9, 10, 11, 12, 13)  # every version from 8 on, forever
BASE_ONLY = 8  # the version of a file without an enhancement layer
_HEADER = struct.Struct("<3sB8sIIHHHbI")
_LAYER = struct.Struct("<BHI")  # format 9: layer kind, step, layer payload length
# each enhancement layer's kind and the format version its files carry: 1, the pixel domain
# (`residual`), and 2, the transform domain (`dct_layer`), in version 9; 3, the predicted pixel layer
# (`predicted_layer`), and 4, the predicted transform-domain layer (`dct_predicted_layer`), in 10;
# 5, the adaptive transform layer (`adaptive_layer`), in 11; 6, the predicted pixel layer alone (no
# learned code beneath it), in 12; 7, the adaptive transform layer over a base made in even tiles, in 13
LAYER_KINDS = {1: 9, 2: 9, 3: 10, 4: 10, 5: 11, 6: 12, 7: 13}
# the layer kinds whose files hold no learned code: their base is a flat grey (`FLAT`), and their
# header says so: no checkpoint (8 zero bytes), code shape (0, 0, 0), step shift 0, no first payload
STANDALONE = (6,)
NO_CHECKPOINT = bytes(8)
FLAT = 128
MAX_LAYER_PIXELS = 4096 * 4096  # an enhancement layer works on the whole image: about 80 bytes a pixel
# ... the predicted pixel layer (kinds 3 and 6) about 300 (a 2048x2048 lossless file decodes in 1.7 GB), so
# its files hold at most half as many: a decode within about 2.5 GB, whatever a file says
MAX_LAYER_PIXELS_OF_KIND = {kind: MAX_LAYER_PIXELS // 2 for kind in (3, 6)}
# The last commit of the CycleCodec repository that wrote each format before 8 (with the weights of
# that commit): a file of that version decodes in a checkout of it.
OLDER_RELEASES = {1: "ac271cb", 2: "ad57aa5", 3: "f9c7a47", 4: "e3e03f9", 5: "6b06ba3", 6: "31830f3",
                  7: "2f283b2"}
_CRC = struct.Struct("<I")
MAX_PIXELS = 100_000_000  # the same bound as for input images
BLOCK = 16  # pixels per code position (model.FACTOR), on each side
MAX_SIDE = 0xFFFF * BLOCK  # the code's height and width are stored as u16


class BitstreamError(ValueError):
    """A .cyc file that is truncated, corrupted or not a .cyc file at all."""


def unstorable_size(width: int, height: int) -> str | None:
    """What is wrong with an image size for a .cyc file, if anything: a side the header cannot
    hold, or more pixels than any decoder should be asked to make."""
    if width < 1 or height < 1 or width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        return (f"image size {width}x{height} out of range: each side 1 to {MAX_SIDE:,} pixels, "
                f"at most {MAX_PIXELS:,} pixels")
    return None


def code_shape(channels: int, width: int, height: int) -> tuple[int, int, int]:
    """The code's (channels, height, width) for an image: one position per 16x16 block."""
    return channels, -(-height // BLOCK), -(-width // BLOCK)


@dataclass
class CycFile:
    checkpoint_id: bytes
    width: int
    height: int
    code_shape: tuple[int, int, int]
    payload: bytes  # (a memoryview into the file's bytes when read, to spare a copy)
    step_shift: int = 0
    layer_kind: int = 0  # the enhancement layer's kind (LAYER_KINDS); 0: none (format 8)
    layer_step: int = 0  # its step, in sixteenths of a pixel value
    layer: bytes = b""  # its payload

    @classmethod
    def standalone(cls, width: int, height: int, layer_kind: int, layer_step: int) -> "CycFile":
        """The container of a layer that stands alone (`STANDALONE`), its payload yet to be set."""
        return cls(NO_CHECKPOINT, width, height, (0, 0, 0), b"", 0, layer_kind, layer_step)

    @property
    def has_code(self) -> bool:
        """Whether the file holds a learned code (every kind but those in STANDALONE)."""
        return self.layer_kind not in STANDALONE

    @property
    def version(self) -> int:
        return LAYER_KINDS.get(self.layer_kind, VERSION) if self.layer_kind else BASE_ONLY

    def _fields(self, payload_length: int, layer_length: int) -> bytes:
        head = _HEADER.pack(MAGIC, self.version, self.checkpoint_id, self.width, self.height,
                            *self.code_shape, self.step_shift, payload_length)
        return head + (_LAYER.pack(self.layer_kind, self.layer_step, layer_length) if self.layer_kind else b"")

    @property
    def seal(self) -> int:
        """The entropy coder's initial (and, for the decoder, final) state, in [2^32, 2^33): it binds
        the payload to every header field but its length."""
        return (1 << 32) | zlib.crc32(self._fields(0, 0)[:_HEADER.size - 4])

    def layer_seal(self, base) -> int:
        """The enhancement layer's seal: the same header fields, salted, so neither payload decodes
        in the other's place, and the CRC-32 of the base's pixels (H, W, 3 uint8, row-major): a layer
        is coded over exact pixels, and over any others it is refused, never decoded."""
        pixels = zlib.crc32(memoryview(base).cast("B")).to_bytes(4, "little")
        return (1 << 32) | zlib.crc32(self._fields(0, 0) + b"enhancement" + pixels)

    def to_bytes(self) -> bytes:
        """The file's bytes. Fields are written as they are (a test may write what no encoder
        would; `codec.encode` checks the image first); ValueError for one the header cannot hold."""
        try:
            head = self._fields(len(self.payload), len(self.layer)) + self.payload + self.layer
        except struct.error as e:
            raise ValueError(f"a .cyc header field is out of range ({e})") from None
        return head + _CRC.pack(zlib.crc32(head))

    @classmethod
    def from_bytes(cls, data: bytes) -> "CycFile":
        """Parse and check the container: framing, checksum, and the header fields against each other."""
        if len(data) < 4 or data[:3] != MAGIC:
            raise BitstreamError("not a .cyc file (bad magic number)")
        version = data[3]
        if version in OLDER_RELEASES:
            commit = OLDER_RELEASES[version]
            raise BitstreamError(f".cyc format version {version} is from an early CycleCodec that no release "
                                 f"reads any more; commit {commit} of the CycleCodec repository decodes it "
                                 f"(git checkout {commit}, then pip install -r requirements.txt and "
                                 f"python -m cycleapp decode)")
        if version not in READABLE:
            raise BitstreamError(f"unsupported .cyc format version {version} (this build reads "
                                 f"{', '.join(map(str, READABLE))}: a newer CycleCodec wrote it)")
        layer = _LAYER.size if version >= 9 else 0
        if len(data) < _HEADER.size + layer + _CRC.size:
            raise BitstreamError("truncated .cyc file (header incomplete)")
        magic, version, cid, width, height, c, h, w, shift, n = _HEADER.unpack_from(data)
        kind, step, m = _LAYER.unpack_from(data, _HEADER.size) if layer else (0, 0, 0)
        start = _HEADER.size + layer
        if len(data) != start + n + m + _CRC.size:
            raise BitstreamError(f"truncated or padded .cyc file ({len(data)} bytes, header says "
                                 f"{start + n + m + _CRC.size})")
        view = memoryview(data)
        (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
        if zlib.crc32(view[:-_CRC.size]) != crc:
            raise BitstreamError("corrupted .cyc file (checksum mismatch)")
        if problem := unstorable_size(width, height):
            raise BitstreamError(f"corrupted .cyc file ({problem})")
        if layer and kind in STANDALONE:
            if (cid, c, h, w, shift, n) != (NO_CHECKPOINT, 0, 0, 0, 0, 0):
                raise BitstreamError(f"corrupted .cyc file (a layer of kind {kind} stands alone: no checkpoint, "
                                     f"code or step shift, but this one has checkpoint {cid.hex()}, code shape "
                                     f"{(c, h, w)}, step shift {shift} and a payload of {n} bytes)")
        elif c < 1 or (c, h, w) != code_shape(c, width, height):
            raise BitstreamError(f"corrupted .cyc file (code shape {(c, h, w)} for a {width}x{height} image)")
        elif n % 4 or n < 8:
            raise BitstreamError(f"corrupted .cyc file (a payload of {n} bytes: the coder writes whole "
                                 "32-bit words, at least the two of its final state)")
        if layer and width * height > MAX_LAYER_PIXELS_OF_KIND.get(kind, MAX_LAYER_PIXELS):
            raise BitstreamError(f"corrupted .cyc file (an enhancement layer over {width}x{height} pixels: "
                                 f"at most {MAX_LAYER_PIXELS_OF_KIND.get(kind, MAX_LAYER_PIXELS):,})")
        if layer and (LAYER_KINDS.get(kind) != version or step == 0 or m % 4 or m < 8):
            raise BitstreamError(f"corrupted .cyc file (an enhancement layer of kind {kind}, {m} bytes, "
                                 f"step {step})")
        return cls(cid, width, height, (c, h, w), view[start:start + n], shift, kind, step,
                   view[start + n:start + n + m])
