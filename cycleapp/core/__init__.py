"""The codec's core: pixels <-> `.cyc` bytes and everything that takes.

`layers` (tied building blocks), `model` (the cycle model), `entropy` (the entropy model and the
coder), `checkpoint` (weights on disk), `bitstream` (the `.cyc` container), `codec` (pixels <-> bytes
with one checkpoint), `residual` and `dct_layer` (format 9's enhancement layers), `interface` (what a
codec object is), `learned` (the learned codec's code sizes, layered codec and modes as codec
objects) and `rate` (rate control: a file for a byte budget). The core imports nothing from
`cycleapp.evaluation` or `cycleapp.app` (tests/test_layout.py checks it).
"""
