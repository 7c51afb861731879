"""A Pillow plug-in for .cyc files, as pillow-heif is for HEIF.

After `cycleapp.register()` (or `import cycleapp.pillow`), `Image.open("photo.cyc")` decodes a
.cyc file and `img.save("photo.cyc", code_size="medium")` (or `target_bytes=20000`,
`lossless=True` as for WebP, `max_error=2`, as `cycleapp.encode` takes them) writes one; a target
out of reach warns as `cycleapp.encode` does (`api.TargetNotReached`). Errors are the ones Pillow
users expect: `UnidentifiedImageError` for a file that is not an image, `OSError` for a damaged
.cyc file or one whose checkpoint is not installed, `ValueError` for an unknown code size.
"""
from __future__ import annotations

from PIL import Image, ImageFile

from cycleapp.core.bitstream import MAGIC, BitstreamError, CycFile

FORMAT = "CYC"


def _accept(prefix: bytes) -> bool:
    return prefix[:3] == MAGIC


class CycImageFile(ImageFile.ImageFile):
    """Opening reads and checks the container (size, checksum); `load()` runs the decoder."""
    format = FORMAT
    format_description = "CycleCodec learned image"

    def _open(self) -> None:
        self._cyc_data = self.fp.read()
        try:
            cyc = CycFile.from_bytes(self._cyc_data)
        except BitstreamError as e:
            raise OSError(str(e)) from None
        self._mode = "RGB"
        self._size = (cyc.width, cyc.height)
        self.tile = []

    def load(self):
        if self._im is None:
            from cycleapp.api import decode

            try:
                rgb = decode(self._cyc_data)
            except ValueError as e:  # a corrupted payload, or a checkpoint not installed here
                raise OSError(str(e)) from None
            self.im = Image.fromarray(rgb, "RGB").im
        return super().load()


def _save(im: Image.Image, fp, filename) -> None:
    from cycleapp.api import DEFAULT_CODE_SIZE, encode

    info = im.encoderinfo
    fp.write(encode(im, info.get("code_size", DEFAULT_CODE_SIZE), info.get("target_bytes"),
                    bool(info.get("lossless", False)), info.get("max_error")))


def register() -> None:
    """Let Pillow open and save .cyc files (idempotent)."""
    Image.register_open(FORMAT, CycImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, ".cyc")
    Image.register_mime(FORMAT, "image/x-cyclecodec")


register()
