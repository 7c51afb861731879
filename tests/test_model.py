"""The model's structure: tied weights, differentiable losses, orthogonal start."""
from functools import partial

import pytest
import torch

from cycleapp.core.model import CodeSize, CycleModel, ModelConfig


def make(tied=True, width=64, kernel=4, blocks=2):
    torch.manual_seed(0)
    return CycleModel(ModelConfig(width=width, hidden1=8, hidden2=8, tied=tied, kernel=kernel, blocks=blocks,
                                  sizes=[CodeSize("a", 32, 0.01), CodeSize("b", width, 0.02)]))


def test_tied_decoder_uses_the_encoder_tensors_themselves():
    model = make()
    for name, weight in model.encoder_weights().items():
        assert model._dec(name) is weight, name
    assert len(model.decoder_weights) == 0
    # A loss on the decoder alone moves encoder weights: there is one tensor, not a copy.
    y = torch.randn(1, 32, 2, 2)
    model.decode(y, 0).sum().backward()
    assert model.down1.weight.grad is not None and model.down1.weight.grad.abs().sum() > 0


def test_untied_decoder_has_its_own_weights():
    model = make(tied=False)
    for name, weight in model.encoder_weights().items():
        assert model._dec(name) is not weight
        assert model._dec(name).data_ptr() != weight.data_ptr()
    n_tied = sum(p.numel() for p in make().parameters())
    n_untied = sum(p.numel() for p in model.parameters())
    assert n_untied > n_tied


def test_losses_are_finite_and_differentiable():
    model = make()
    x = torch.rand(2, 3, 32, 48)
    out = model(x, 0, cycle=True)
    for key in ("bpp", "cycle", "sparsity"):
        assert torch.isfinite(out[key]).all() and out[key].requires_grad, key
    assert out["bpp"].shape == (2,) and (out["bpp"] > 0).all()  # each image's own rate
    (out["bpp"].mean() + out["cycle"] + ((out["x_hat"] - x) ** 2).mean()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.densities[0].dc.matrices[0].grad.abs().sum() > 0  # the rate reaches the entropy model
    assert model.densities[0].log_scale.grad.abs().sum() > 0
    assert model.res1.b.grad.abs().sum() > 0 and model.down2.weight.grad.abs().sum() > 0  # and the transform


@pytest.mark.parametrize("kernel", [4, 8])
def test_orthogonal_start_reconstructs_when_complete(kernel):
    """With all 768 components kept, the tied pair is an orthogonal transform and its inverse
    (the lapped variant too: it starts as the block transform)."""
    model = make(width=768, kernel=kernel)
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 64, 64, generator=g) for _ in range(4)]
    model.init_orthogonal(images, samples=4000)
    x = torch.rand(1, 3, 32, 32, generator=g)
    with torch.no_grad():
        h = model.down2(model.down1(x - 0.5))
        back = model.down1.transpose(model.down2.transpose(h)) + 0.5
    assert torch.allclose(back, x, atol=1e-4)


def test_lapped_transform_learns_to_overlap_and_keeps_shapes():
    """A kernel-8 model keeps the code at 1/16 of the resolution, and its gradient reaches the
    kernel's border (the overlap), which starts at zero."""
    model = make(kernel=8)
    x = torch.rand(1, 3, 48, 32)
    y = model.encode(x, 1)
    assert y.shape == (1, 64, 3, 2)
    assert model.decode(torch.round(y), 1).shape == x.shape
    model(x, 1, cycle=False)["x_hat"].square().sum().backward()
    border = model.down2.weight.grad.clone()
    border[..., 2:6, 2:6] = 0
    assert border.abs().sum() > 0


def test_contexts_are_integer_and_use_only_decoded_symbols():
    """The decoder picks a table from symbols it has already decoded, in integers: in each of a
    group's passes, changing the group's positions of that pass and later ones, or any later group,
    never changes that pass's contexts."""
    from cycleapp.core.entropy import CONTEXTS, GROUP_EDGES, PASSES, contexts, phases

    g = torch.Generator().manual_seed(0)
    code = torch.randint(-20, 21, (1, 96, 6, 7), generator=g)
    weights = torch.randint(1, 300, (96,), generator=g)
    contexts = partial(contexts, weights=weights)
    ctx = contexts(code)
    assert ctx.dtype == torch.int64 and ctx.min() >= 0 and ctx.max() < CONTEXTS
    assert (ctx[:, 0] == 0).all()
    assert len(ctx[:, 1:].unique()) > 10  # contexts do vary
    phase = phases(6, 7)
    assert sorted(phase.unique().tolist()) == list(range(PASSES))
    for start in [e for e in GROUP_EDGES if e < 96]:
        end = min([e for e in GROUP_EDGES if e > start] + [96])
        for k in range(PASSES):  # the decoder has the lower groups and this group's earlier passes
            later = code.clone()
            later[:, end:] = torch.randint(-50, 51, later[:, end:].shape, generator=g)
            unknown = phase >= k
            later[:, start:end, unknown] = torch.randint(-50, 51, later[:, start:end, unknown].shape, generator=g)
            assert torch.equal(contexts(later)[:, start:end][..., phase == k], ctx[:, start:end][..., phase == k])


def test_the_four_passes_read_the_neighbours_decoded_before_them():
    """The 2x2 pattern: (even, even) first, then (odd, odd), (even, odd), (odd, even); the second
    pass reads its diagonal neighbours, the third its direct ones, the fourth all eight."""
    from cycleapp.core.entropy import NEIGHBOUR_STATES, contexts, phases

    phase = phases(4, 4)
    assert phase[0].tolist() == [0, 2, 0, 2] and phase[1].tolist() == [3, 1, 3, 1]
    ones = torch.ones(2, dtype=torch.int64)
    state = lambda code, i, j: int(contexts(code, ones)[0, 1, i, j]) % NEIGHBOUR_STATES
    quiet = torch.zeros(1, 2, 5, 5, dtype=torch.int64)
    for (i, j), first in (((2, 2), 0), ((1, 1), 1), ((2, 1), 5), ((1, 2), 10)):
        assert state(quiet, i, j) == first  # the first state of each pass, where all is zero
    busy = quiet.clone()
    busy[0, 1, 2, 2] = 30  # a first-pass position: a diagonal neighbour of (1, 1), a direct one of (2, 1)
    assert state(busy, 1, 1) > 1 and state(busy, 2, 1) > 5 and state(busy, 2, 2) == 0
    busy = quiet.clone()
    busy[0, 1, 1, 1] = 30  # a second-pass position: a direct neighbour of (2, 1) and (1, 2)
    assert state(busy, 2, 1) > 5 and state(busy, 1, 2) > 10
    busy = quiet.clone()
    busy[0, 1, 1, 2] = 30  # a fourth-pass position: a diagonal neighbour of (2, 1) and (0, 1), not read
    assert state(busy, 2, 1) == 5 and state(busy, 0, 1) == 5


def test_a_channels_context_reads_its_own_neighbours_and_the_weighted_channels_below():
    """At a position of a later pass a channel's context counts its own decoded neighbours, not
    those of the other channels of its group; the activity counts the channels below the group
    with their weights, so a heavier weight on a lower channel raises the activity above it."""
    from cycleapp.core.entropy import NEIGHBOUR_STATES, contexts

    code = torch.zeros(1, 12, 5, 5, dtype=torch.int64)
    code[0, 3, 2, 2] = code[0, 3, 2, 4] = 9  # channel 3 (group 1-7): two first-pass neighbours of (2, 3)
    ctx = contexts(code, torch.ones(12, dtype=torch.int64))
    assert ctx[0, 3, 2, 3] % NEIGHBOUR_STATES > 5  # its own neighbours are busy
    assert ctx[0, 4, 2, 3] % NEIGHBOUR_STATES == 5  # channel 4's are quiet
    heavier = contexts(code, torch.tensor([1, 1, 1, 100] + [1] * 8))
    assert heavier[0, 8, 2, 3] > ctx[0, 8, 2, 3]
    assert torch.equal(heavier[0, :8], ctx[0, :8])  # channel 3's weight counts above its group only


def test_a_deeper_model_starts_as_the_one_it_grows_from():
    """Blocks added at the code's resolution start as the identity: loaded with a two-block model's
    weights (what fits, as `--init-from` does), a four-block model encodes and decodes exactly as it
    did; the new blocks train (their gradient is not zero) and the decoder shares their weights."""
    small, deep = make(kernel=8), make(kernel=8, blocks=4)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in small.encoder_weights().values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    missing, unexpected = deep.load_state_dict(small.state_dict(), strict=False)
    assert sorted(missing) == ["res4.a", "res4.b", "res5.a", "res5.b"] and not unexpected
    x, y = torch.rand(1, 3, 48, 64, generator=g), torch.randn(1, 32, 3, 4, generator=g)
    with torch.no_grad():
        assert torch.equal(deep.encode(x, 0), small.encode(x, 0))
        assert torch.equal(deep.decode(y, 0), small.decode(y, 0))
    assert deep.halo() == small.halo() + 4  # two more blocks: two code positions more on each side
    for name in ("res4_a", "res4_b", "res5_a", "res5_b"):
        assert deep._dec(name) is deep.encoder_weights()[name]
    deep(x, 0, cycle=True)["x_hat"].square().sum().backward()
    assert deep.res4.b.grad.abs().sum() > 0 and deep.res5.b.grad.abs().sum() > 0


@pytest.mark.parametrize("kernel,blocks", [(4, 2), (8, 2), (8, 3)])
def test_halo_covers_the_receptive_field(kernel, blocks):
    """Code tiles transformed with `halo()` positions of context on each side give the whole image's
    result (to float error), in both directions; one position less does not. Random weights in every
    layer, so that every tap of every kernel counts."""
    from cycleapp.core.codec import _around, tiles

    model = make(kernel=kernel, blocks=blocks)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.encoder_weights().values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    halo = model.halo()
    y = torch.randn(1, 32, 11, 13, generator=g)
    x = torch.rand(1, 3, 16 * 11, 16 * 13, generator=g)

    def tiled(margin, decode):
        """The transform of y (decode) or x (encode), tile by tile: code positions are 16 pixels."""
        source, unit_in, unit_out = (y, 1, 16) if decode else (x, 16, 1)
        out = torch.zeros_like(x if decode else y)
        for top, bottom, left, right in tiles(11, 13, 4):
            (t, b), (l, r) = _around(top, bottom, 11, margin), _around(left, right, 13, margin)
            window = source[..., unit_in * t:unit_in * b, unit_in * l:unit_in * r]
            part = model.decode(window, 0) if decode else model.encode(window, 0)
            out[..., unit_out * top:unit_out * bottom, unit_out * left:unit_out * right] = part[
                ..., unit_out * (top - t):unit_out * (bottom - t), unit_out * (left - l):unit_out * (right - l)]
        return out

    with torch.no_grad():
        for decode, whole in ((True, model.decode(y, 0)), (False, model.encode(x, 0))):
            scale = whole.abs().max()
            assert (tiled(halo, decode) - whole).abs().max() < 1e-5 * scale
            assert (tiled(halo - 1, decode) - whole).abs().max() > 1e-3 * scale
