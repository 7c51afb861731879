"""Measuring codecs against each other: `registry` (every codec compared: the learned one and the
classical ones), `measure` (how a file is measured, in one place), `metrics`, `matching` (a codec at
a given quality), `compare` (one image, every codec at the same size or quality), `verdict` (who
wins, in words), `sweeps` (rate-distortion curves) and `plots`. It imports the core, never the app.
"""
