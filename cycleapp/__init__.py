"""CycleCodec: a learned image codec built on cycle consistency.

    import cycleapp
    data = cycleapp.encode(image, code_size="medium")   # a PIL image or a numpy array -> .cyc bytes
    pixels = cycleapp.decode(data)                       # -> (H, W, 3) uint8
    cycleapp.register()                                  # Pillow opens and saves .cyc files

Three layers, each a sub-package: `core` (the codec: model, entropy coder, checkpoints, the .cyc
container, rate control), `evaluation` (the classical codecs, measuring, matching, comparisons and
plots) and `app` (the Gradio app's logic). At the top: `api` (the Python API), `pillow` (the Pillow
plug-in), `imageio` (reading any image) and `__main__` (the command line). The core imports
nothing from the other two (tests/test_layout.py).

The names above are imported on first use, so `import cycleapp` stays light (no torch).
"""

# Raised with every change to the .cyc format or the weights (docs/release-policy.md, CHANGELOG.md);
# pyproject.toml says the same.
__version__ = "0.12.1"


def __getattr__(name):
    if name in ("encode", "decode"):
        from cycleapp import api

        return getattr(api, name)
    if name == "register":
        from cycleapp.pillow import register

        return register
    raise AttributeError(f"module 'cycleapp' has no attribute {name!r}")
