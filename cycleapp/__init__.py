"""CycleCodec: a learned image codec built on cycle consistency.

Modules, one concern each: `layers` (tied building blocks), `entropy` (entropy models and the
coder), `model` (the cycle model), `checkpoint` (weights on disk), `bitstream` (the .cyc container),
`codec` (pixels <-> .cyc), `imageio` (reading any image), `classical` (JPEG & co. at matched size),
`metrics`, `compare`, `sweeps` and `plots` (what the CLI, the app and the evaluation report).
"""
