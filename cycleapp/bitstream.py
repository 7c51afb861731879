"""The `.cyc` container: everything needed to decode, and a check that it arrived intact.

Layout (little-endian):
    magic b"CYC" | version u8 | checkpoint id 8 bytes | width u32 | height u32 |
    code channels u16 | code height u16 | code width u16 | step shift i8 | payload length u32 |
    payload (entropy-coded, constriction ANS words) | CRC-32 of all preceding bytes u32

The step shift (format version 2) scales the quantisation steps of every channel after the DC by
GRID_RATIO ** (shift / STEP_UNITS): the encoder's rate control between and beyond the code sizes.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"CYC"
VERSION = 2
_HEADER = struct.Struct("<3sB8sIIHHHbI")
_CRC = struct.Struct("<I")
MAX_PIXELS = 100_000_000  # the same bound as for input images


class BitstreamError(ValueError):
    """A .cyc file that is truncated, corrupted or not a .cyc file at all."""


@dataclass
class CycFile:
    checkpoint_id: bytes
    width: int
    height: int
    code_shape: tuple[int, int, int]
    payload: bytes
    step_shift: int = 0

    def to_bytes(self) -> bytes:
        head = _HEADER.pack(MAGIC, VERSION, self.checkpoint_id, self.width, self.height,
                            *self.code_shape, self.step_shift, len(self.payload)) + self.payload
        return head + _CRC.pack(zlib.crc32(head))

    @classmethod
    def from_bytes(cls, data: bytes) -> "CycFile":
        if len(data) < 4 or data[:3] != MAGIC:
            raise BitstreamError("not a .cyc file (bad magic number)")
        if data[3] != VERSION:
            raise BitstreamError(f"unsupported .cyc format version {data[3]} (this build reads {VERSION})")
        if len(data) < _HEADER.size + _CRC.size:
            raise BitstreamError("truncated .cyc file (header incomplete)")
        magic, version, cid, width, height, c, h, w, shift, n = _HEADER.unpack_from(data)
        if len(data) != _HEADER.size + n + _CRC.size:
            raise BitstreamError(f"truncated or padded .cyc file ({len(data)} bytes, header says "
                                 f"{_HEADER.size + n + _CRC.size})")
        (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
        if zlib.crc32(data[:-_CRC.size]) != crc:
            raise BitstreamError("corrupted .cyc file (checksum mismatch)")
        if width < 1 or height < 1 or width * height > MAX_PIXELS:
            raise BitstreamError(f"corrupted .cyc file (image size {width}x{height})")
        return cls(cid, width, height, (c, h, w), data[_HEADER.size:_HEADER.size + n], shift)
