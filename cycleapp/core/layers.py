"""Building blocks of the cycle model: tied (transposed) layers and their orthogonal start.

The decoder shares the encoder's weights layer by layer: a convolution in the encoder is
run as its transposed convolution in the decoder. With an orthogonal (PCA / KLT) filter bank
as the starting point, the tied pair reconstructs (almost) perfectly at step 0, so training
only has to learn refinements, quantisation steps and the entropy model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchConv(nn.Module):
    """Strided convolution without bias: a block transform (kernel == stride) or a lapped one.

    Encoder direction: conv2d. Decoder direction: conv_transpose2d with the same weight,
    which is the exact inverse whenever the weight's rows are orthonormal and complete.
    A kernel larger than the stride (a lapped transform) lets neighbouring basis functions
    overlap, so the decoder's output has no block edges; it starts as the block transform
    (the kernel's border is zero, see `pad_kernel`) and learns to use the overlap.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, kernel: int | None = None):
        super().__init__()
        kernel = kernel or stride
        assert (kernel - stride) % 2 == 0, "the overlap must be the same on both sides"
        self.stride, self.padding = stride, (kernel - stride) // 2
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, kernel, kernel))
        nn.init.orthogonal_(self.weight)  # orthonormal rows: the transpose is a left inverse

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, stride=self.stride, padding=self.padding)

    def transpose(self, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return F.conv_transpose2d(y, self.weight if weight is None else weight, stride=self.stride,
                                  padding=self.padding)


def pad_kernel(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    """A block-transform kernel embedded in the centre of a larger (lapped) one, same function."""
    border = (kernel - weight.shape[-1]) // 2
    return F.pad(weight, (border, border, border, border))


class ResBlock(nn.Module):
    """x + B(relu(A(x))), with B zero-initialised so the block starts as the identity.

    Its decoder twin uses the transposed weights in reverse order: y + A^T(relu(B^T(y))).
    """

    def __init__(self, ch: int, hidden: int, kernel: int = 3):
        super().__init__()
        self.pad = kernel // 2
        self.a = nn.Parameter(torch.empty(hidden, ch, kernel, kernel))
        self.b = nn.Parameter(torch.zeros(ch, hidden, kernel, kernel))
        nn.init.kaiming_uniform_(self.a, a=5 ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.conv2d(F.relu(F.conv2d(x, self.a, padding=self.pad)), self.b, padding=self.pad)

    def transpose(self, y: torch.Tensor, a: torch.Tensor | None = None, b: torch.Tensor | None = None) -> torch.Tensor:
        a = self.a if a is None else a
        b = self.b if b is None else b
        h = F.relu(F.conv_transpose2d(y, b, padding=self.pad))
        return y + F.conv_transpose2d(h, a, padding=self.pad)


def pca_basis(patches: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis (rows) of the patches' principal components, most energetic first."""
    flat = patches.reshape(patches.shape[0], -1).double()
    cov = flat.T @ flat / flat.shape[0]
    energy, vectors = torch.linalg.eigh(cov)
    order = torch.argsort(energy, descending=True)
    basis = vectors[:, order].T.contiguous()
    # Fix each vector's sign so the result does not depend on the eigen-solver.
    signs = torch.sign(basis[torch.arange(basis.shape[0]), basis.abs().argmax(dim=1)])
    return (basis * signs[:, None]).float()


def random_patches(images: list[torch.Tensor], size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` random size x size crops (3, size, size) from float images in [0, 1], centred at 0."""
    out = []
    for i in range(count):
        img = images[int(torch.randint(len(images), (1,), generator=generator))]
        _, h, w = img.shape
        top = int(torch.randint(h - size + 1, (1,), generator=generator))
        left = int(torch.randint(w - size + 1, (1,), generator=generator))
        out.append(img[:, top:top + size, left:left + size])
    return torch.stack(out) - 0.5
