"""The cycle model: a tied encoder/decoder pair, a quantiser per code size, an entropy model.

Encoder (analysis):  x -> down1 (stride 4) -> res1 -> down2 (stride 4) -> res2 -> res3 [-> res4 ...] -> code layer
Decoder (synthesis): the same layers in reverse order, each run with its twin's weights transposed.
`blocks` residual blocks run at the code's resolution (res2, res3, ...): each one widens the receptive
field by two code positions (32 pixels) on every side for little time, since it runs on 1/256 of the
pixels. A model with more blocks starts from one with fewer exactly: a new block is the identity.

One transform serves several code sizes (a nested code): the code layer emits `width` channels,
and a code size of k channels keeps the first k of them, with its own quantisation steps,
entropy model and rate-distortion trade-off lambda.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cycleapp.core.entropy import EntropyModel
from cycleapp.core.layers import PatchConv, ResBlock, pad_kernel, pca_basis, random_patches

FACTOR = 16  # the code is at 1/16 of the image resolution


@dataclass
class CodeSize:
    name: str
    channels: int
    lmbda: float


@dataclass
class ModelConfig:
    width: int = 320
    hidden1: int = 48
    hidden2: int = 96
    tied: bool = True
    kernel: int = 4  # of the two down-sampling layers: 4 = block transform, 8 = lapped
    blocks: int = 2  # residual blocks at the code's resolution: res2, res3, ...
    sizes: list[CodeSize] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        d["sizes"] = [CodeSize(**s) for s in d.get("sizes", [])]
        return cls(**d)


def initial_step(lmbda: float) -> float:
    """A reasonable starting quantisation step for a trade-off lambda (learned afterwards)."""
    return 0.015 / lmbda ** 0.5


def _conv_reads(lo: int, hi: int, layer: PatchConv) -> tuple[int, int]:
    """The input rows a PatchConv's output rows lo..hi (inclusive) read."""
    kernel = layer.weight.shape[-1]
    return layer.stride * lo - layer.padding, layer.stride * hi - layer.padding + kernel - 1


def _transposed_reads(lo: int, hi: int, layer: PatchConv) -> tuple[int, int]:
    """The input rows that write a PatchConv's transposed output rows lo..hi (inclusive)."""
    kernel = layer.weight.shape[-1]
    return -((kernel - 1 - layer.padding - lo) // layer.stride), (hi + layer.padding) // layer.stride


class CycleModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.down1 = PatchConv(3, 48, 4, config.kernel)
        self.res1 = ResBlock(48, config.hidden1)
        self.down2 = PatchConv(48, w, 4, config.kernel)
        for k in range(config.blocks):
            setattr(self, f"res{k + 2}", ResBlock(w, config.hidden2))
        max_ch = max((s.channels for s in config.sizes), default=w)
        self.code = nn.Parameter(torch.eye(max_ch, w).view(max_ch, w, 1, 1).clone())
        self.log_steps = nn.ParameterList(
            nn.Parameter(torch.full((s.channels,), float(torch.tensor(initial_step(s.lmbda)).log())))
            for s in config.sizes)
        self.densities = nn.ModuleList(EntropyModel(s.channels) for s in config.sizes)
        # Untied ablation: the decoder gets its own copy of every weight.
        self.decoder_weights = nn.ParameterDict()
        if not config.tied:
            self._untie()

    # -- weights ---------------------------------------------------------------------------
    def code_blocks(self) -> list[tuple[str, ResBlock]]:
        """The residual blocks at the code's resolution, in the encoder's order: (name, block)."""
        return [(f"res{k + 2}", getattr(self, f"res{k + 2}")) for k in range(self.config.blocks)]

    def encoder_weights(self) -> dict[str, nn.Parameter]:
        blocks = {f"{name}_{part}": getattr(block, part) for name, block in self.code_blocks() for part in "ab"}
        return {"down1": self.down1.weight, "res1_a": self.res1.a, "res1_b": self.res1.b,
                "down2": self.down2.weight, **blocks, "code": self.code}

    def _untie(self) -> None:
        for name, p in self.encoder_weights().items():
            self.decoder_weights[name] = nn.Parameter(p.detach().clone())

    def _dec(self, name: str) -> torch.Tensor:
        return self.decoder_weights[name] if name in self.decoder_weights else self.encoder_weights()[name]

    @torch.no_grad()
    def init_orthogonal(self, images: list[torch.Tensor], samples: int = 20000, seed: int = 0) -> None:
        """Start from the data's principal components (a KLT, a DCT-like filter bank).

        down1 is the 48-component PCA of 4x4 RGB patches (complete, orthogonal); down2 maps the
        4x4 grid of those to the leading `width` components of the 16x16 PCA, so the tied
        decoder reconstructs the projection of the image on them at step 0. A lapped model
        (kernel 8) starts as that same block transform, its kernels' borders zero.
        """
        g = torch.Generator().manual_seed(seed)
        small = pca_basis(random_patches(images, 4, samples, g)).view(48, 3, 4, 4)  # (48, 48)
        big = pca_basis(random_patches(images, FACTOR, samples, g))[: self.config.width]  # (w, 768)
        # Express each 16x16 basis image in down1's coordinates: (I kron W1) u.
        big = F.conv2d(big.view(-1, 3, FACTOR, FACTOR), small, stride=4)
        self.down1.weight.copy_(pad_kernel(small, self.config.kernel))
        self.down2.weight.copy_(pad_kernel(big, self.config.kernel))
        if not self.config.tied:
            self._untie()

    # -- transform -------------------------------------------------------------------------
    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        h = self.down2(self.res1(self.down1(x - 0.5)))
        for _, block in self.code_blocks():
            h = block(h)
        return h

    def encode(self, x: torch.Tensor, size: int) -> torch.Tensor:
        """Continuous code of size index `size`, in units of its quantisation steps."""
        k = self.config.sizes[size].channels
        y = F.conv2d(self.analysis(x), self.code[:k])
        return y / self.log_steps[size].exp().view(1, -1, 1, 1)

    def decode(self, y_hat: torch.Tensor, size: int) -> torch.Tensor:
        """Reconstruction (unclamped, in [0, 1] scale) from a quantised code."""
        k = y_hat.shape[1]
        d = self._dec
        h = F.conv_transpose2d(y_hat * self.log_steps[size].exp().view(1, -1, 1, 1), d("code")[:k])
        for name, block in reversed(self.code_blocks()):
            h = block.transpose(h, d(f"{name}_a"), d(f"{name}_b"))
        h = self.down2.transpose(h, d("down2"))
        h = self.res1.transpose(h, d("res1_a"), d("res1_b"))
        return self.down1.transpose(h, d("down1")) + 0.5

    def halo(self) -> int:
        """Code rows (and columns) of context a tile of the code needs on each side for the transform
        of the tile to be the whole image's transform there: the layers' receptive field, the wider
        of the two directions, in whole code blocks (6 for the shipped lapped models)."""
        quarter = 2 * self.res1.pad  # a ResBlock is two convolutions of radius `pad`
        code = sum(2 * block.pad for _, block in self.code_blocks())
        # analysis: code rows 0..0 read down2's output rows -code..code, which read ... pixels lo..hi
        lo, hi = _conv_reads(-code, code, self.down2)
        lo, hi = _conv_reads(lo - quarter, hi + quarter, self.down1)
        analysis = max(-lo, hi - (FACTOR - 1))  # pixels beyond the block's own 16
        # synthesis: pixel rows 0..15 are written by quarter rows lo..hi, which are written by ... code rows
        lo, hi = _transposed_reads(0, FACTOR - 1, self.down1)
        lo, hi = _transposed_reads(lo - quarter, hi + quarter, self.down2)
        synthesis = max(-lo, hi) + code  # code blocks beyond the block
        return max(-(-analysis // FACTOR), synthesis)

    # -- training --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, size: int, cycle: bool = True) -> dict[str, torch.Tensor]:
        """Training pass: rate on the noisy code, distortion on the straight-through rounded code.

        "bpp" holds each image's own estimate (B,), so that a loss may weigh the images."""
        y = self.encode(x, size)
        noisy = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        code = torch.round(y).detach()
        bits = -torch.log2(self.densities[size].likelihood(noisy, code)).sum((1, 2, 3))  # per image
        y_hat = y + (code - y).detach()
        x_hat = self.decode(y_hat, size)
        out = {"x_hat": x_hat, "bpp": bits / (x.shape[2] * x.shape[3]),
               "sparsity": y_hat.abs().mean()}
        if cycle:
            out["cycle"] = F.mse_loss(self.encode(x_hat, size), y_hat.detach())
        return out
