"""CycleCodec: a learned image codec built on cycle consistency.

    import cycleapp
    data = cycleapp.encode(image, code_size="medium")   # a PIL image or a numpy array -> .cyc bytes
    pixels = cycleapp.decode(data)                       # -> (H, W, 3) uint8
    cycleapp.register()                                  # Pillow opens and saves .cyc files

Modules, one concern each: `layers` (tied building blocks), `entropy` (entropy models and the
coder), `model` (the cycle model), `checkpoint` (weights on disk), `bitstream` (the .cyc container),
`codec` (pixels <-> .cyc), `residual` (the enhancement layer: high rates, near-lossless, lossless), `imageio` (reading any image), `codecs` (what a codec is, and the
registry of all of them), `measure` (how we measure), `matching` (a codec at a given file size),
`compare`, `sweeps`, `metrics` and `plots` (what the CLI, the app and the evaluation report),
`api` and `pillow` (the Python API and the Pillow plug-in).

The names above are imported on first use, so `import cycleapp` stays light (no torch).
"""

# Raised with every change to the .cyc format or the weights (docs/release-policy.md, CHANGELOG.md);
# pyproject.toml says the same.
__version__ = "0.9.0"


def __getattr__(name):
    if name in ("encode", "decode"):
        from . import api

        return getattr(api, name)
    if name == "register":
        from .pillow import register

        return register
    raise AttributeError(f"module 'cycleapp' has no attribute {name!r}")
