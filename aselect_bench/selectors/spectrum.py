"""Label-free statistics of the calibration images' pooled features (mean over tokens, ``[N, C]``)."""

from __future__ import annotations

import torch

from aselect_bench.selectors.base import Selector, register


def pooled(features: torch.Tensor) -> torch.Tensor:
    """``[N, C, h, w]`` -> ``[N, C]`` float64: each image's mean token."""
    return features.double().mean(dim=(2, 3))


def effective_rank(z: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe of embeddings ``z [N, C]``: ``exp(-sum p log p)`` with ``p = sigma / ||sigma||_1 + eps`` over the
    singular values ``sigma`` of ``z`` (uncentred, as in the paper); between 1 and ``min(N, C)``."""
    sigma = torch.linalg.svdvals(z.double())
    if float(sigma.sum()) == 0.0:
        return 0.0
    p = sigma / sigma.sum() + eps
    return float(torch.exp(-(p * p.log()).sum()))


def spectral_decay(z: torch.Tensor) -> float:
    """alpha of a power law ``lambda_i ~ i^-alpha`` fitted (least squares, log-log) to the non-zero eigenvalues
    of the covariance of ``z [N, C]``; ``nan`` with fewer than 3 of them."""
    z = z.double() - z.double().mean(0)
    eig = torch.linalg.svdvals(z).square() / max(1, z.shape[0] - 1)
    eig = eig[eig > eig[0] * 1e-12] if len(eig) and eig[0] > 0 else eig[:0]
    if len(eig) < 3:
        return float("nan")
    x = torch.arange(1, len(eig) + 1, dtype=torch.float64).log()
    y = eig.log()
    slope = ((x - x.mean()) * (y - y.mean())).sum() / (x - x.mean()).square().sum()
    return float(-slope)


class RankMe(Selector):
    """RankMe (Garrido, Balestriero, Najman & LeCun, ICML 2023): the effective rank of the pooled
    embeddings; a higher rank predicted better downstream accuracy across their SSL models."""

    def score(self, features: torch.Tensor, labels=None) -> float:
        return effective_rank(pooled(features))


class AlphaReQ(Selector):
    """alpha-ReQ (Agrawal, Mondal, Ghosh & Richards, NeurIPS 2022): the decay coefficient alpha of the
    pooled embeddings' eigenspectrum; they find representations generalise best near alpha = 1, so the score
    is ``-|alpha - 1|`` (a flat spectrum, alpha -> 0, is noise-like; a steep one, alpha >> 1, has collapsed).
    Undefined (NaN) with fewer than 3 non-zero eigenvalues: N images give at most N - 1, so it needs 4."""

    min_images = 4

    def why_undefined(self, num_images: int) -> str:
        if num_images < self.min_images:
            return (f"alpha is fitted to at least 3 non-zero eigenvalues of the pooled features' covariance, and "
                    f"{num_images} images give at most {max(0, num_images - 1)}")
        return "the pooled features' covariance has fewer than 3 non-zero eigenvalues (collapsed features)"

    def score(self, features: torch.Tensor, labels=None) -> float:
        return -abs(spectral_decay(pooled(features)) - 1.0)  # NaN (undefined) stays NaN


register("rankme")(lambda settings: RankMe())
register("alpha-req")(lambda settings: AlphaReQ())
