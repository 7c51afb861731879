"""Entropy model of the code and the real entropy coder, in parts that each do one thing:

- `prediction`: what is coded, the symbols: each channel minus an integer prediction from its
  decoded neighbours (none, left, up, planar or LOCO-I's median edge detector), chosen per channel;
- `context_rule`: the context rule, which table codes each symbol, read from symbols the decoder
  already has; written once, in integer torch arithmetic, and used by training and the coder alike;
- `family`: the tables of the channels after the DC, generalised Gaussians on a log grid of scales;
- `density`: the trainable entropy model (`EntropyModel`), which export turns into coding tables;
- `tables`: one checkpoint's coding tables (`CodingTables`), checked and ready for constriction,
  and the one function that reads the bits of symbols from them (`CodingTables.bits`);
- `stream`: the payload, the order of its symbols and the sealed ANS coder that writes and reads it;
- `rdo`: the encoder's choices the decoder never repeats: RDOQ and the per-image table moves.

Everything is integer arithmetic where the encoder and the decoder must agree, so a file decodes
the same on any machine. The names other modules use are importable from `cycleapp.core.entropy`.
"""
from .context_rule import (ACTIVITY_BUCKETS, ACTIVITY_UNIT, ACTIVITY_WEIGHT_MAX, CONTEXTS, DC_CONTEXTS,
                           GROUP_EDGES, NEIGHBOUR_STATES, PASS_OFFSETS, PASSES, activity_context, activity_weights,
                           bucket, contexts, dc_contexts, groups, in_pass, pass_contexts, pass_state, phases,
                           weighted_sum)
from .density import EntropyModel, FactorizedDensity, laplace_likelihood
from .family import (GRID_RATIO, LAPLACE, LIKELIHOOD_FLOOR, SCALE_MAX, SCALE_MIN, SCALES, SHAPES, TABLES, ac_tables,
                     moved, scale_grid)
from .prediction import (AC_CLAMP, DC_CLAMP, DC_PREDICTORS, MED, PLANAR, PREDICTION_GAIN, PREDICTORS, choose_predictors,
                         code_limits, empirical_bits, from_residuals, median_edge, residuals)
from .stream import (ADAPT_RANGE, ADAPT_RATIO, CHUNK, DEFAULT_SEAL, PRECISION, check_not_dry, moves_bits, runs,
                     words)
from .tables import CodingTables
