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
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"CYC"
VERSION = 8
_HEADER = struct.Struct("<3sB8sIIHHHbI")
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

    @property
    def seal(self) -> int:
        """The entropy coder's initial (and, for the decoder, final) state, in [2^32, 2^33): it binds
        the payload to every header field but its length."""
        fields = _HEADER.pack(MAGIC, VERSION, self.checkpoint_id, self.width, self.height,
                              *self.code_shape, self.step_shift, 0)[:-4]
        return (1 << 32) | zlib.crc32(fields)

    def to_bytes(self) -> bytes:
        """The file's bytes. Fields are written as they are (a test may write what no encoder
        would; `codec.encode` checks the image first); ValueError for one the header cannot hold."""
        try:
            head = _HEADER.pack(MAGIC, VERSION, self.checkpoint_id, self.width, self.height,
                                *self.code_shape, self.step_shift, len(self.payload)) + self.payload
        except struct.error as e:
            raise ValueError(f"a .cyc header field is out of range ({e})") from None
        return head + _CRC.pack(zlib.crc32(head))

    @classmethod
    def from_bytes(cls, data: bytes) -> "CycFile":
        """Parse and check the container: framing, checksum, and the header fields against each other."""
        if len(data) < 4 or data[:3] != MAGIC:
            raise BitstreamError("not a .cyc file (bad magic number)")
        if data[3] < VERSION:
            raise BitstreamError(f".cyc format version {data[3]} is from an older CycleCodec; this build "
                                 f"reads version {VERSION} only (encode the image again)")
        if data[3] != VERSION:
            raise BitstreamError(f"unsupported .cyc format version {data[3]} (this build reads {VERSION})")
        if len(data) < _HEADER.size + _CRC.size:
            raise BitstreamError("truncated .cyc file (header incomplete)")
        magic, version, cid, width, height, c, h, w, shift, n = _HEADER.unpack_from(data)
        if len(data) != _HEADER.size + n + _CRC.size:
            raise BitstreamError(f"truncated or padded .cyc file ({len(data)} bytes, header says "
                                 f"{_HEADER.size + n + _CRC.size})")
        view = memoryview(data)
        (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
        if zlib.crc32(view[:-_CRC.size]) != crc:
            raise BitstreamError("corrupted .cyc file (checksum mismatch)")
        if problem := unstorable_size(width, height):
            raise BitstreamError(f"corrupted .cyc file ({problem})")
        if c < 1 or (c, h, w) != code_shape(c, width, height):
            raise BitstreamError(f"corrupted .cyc file (code shape {(c, h, w)} for a {width}x{height} image)")
        if n % 4 or n < 8:
            raise BitstreamError(f"corrupted .cyc file (a payload of {n} bytes: the coder writes whole "
                                 "32-bit words, at least the two of its final state)")
        return cls(cid, width, height, (c, h, w), view[_HEADER.size:_HEADER.size + n], shift)
