"""Cheap label-using proxies of the exhaustive search, on a labelled held-out set (the split every choice is
made on, never the reported one): leave-one-out k-NN and nearest class mean on pooled features
(classification), nearest class mean per token (segmentation). Each image's features at a candidate are one
extra forward, counted as the selector's own cost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aselect_bench.selectors.base import Labels, Selector, register
from aselect_bench.selectors.spectrum import pooled


def normalise(z: torch.Tensor) -> torch.Tensor:
    """Centre ``z [N, D]`` on its mean and scale each row to unit length (cosine geometry, scale-free across
    timesteps)."""
    return F.normalize(z - z.mean(0), dim=1)


def knn_accuracy(z: torch.Tensor, y: torch.Tensor, k: int = 10) -> float:
    """Leave-one-out k-NN top-1 (percent) of embeddings ``z [N, D]`` with labels ``y [N]``: cosine
    similarity after centring, majority vote of the ``k`` nearest others (ties: the larger summed similarity)."""
    n = len(y)
    if n < 2:
        return float("nan")
    z = normalise(z.double())
    sim = z @ z.T
    sim.fill_diagonal_(float("-inf"))
    top, idx = sim.topk(min(k, n - 1), dim=1)
    num_classes = int(y.max()) + 1
    votes = torch.zeros(n, num_classes, dtype=torch.float64).scatter_add_(1, y[idx], torch.ones_like(top))
    weight = torch.zeros(n, num_classes, dtype=torch.float64).scatter_add_(1, y[idx], top)
    pred = (votes + 1e-6 * weight.clamp(-1, 1)).argmax(1)  # the vote count first, similarity breaks ties
    return float((pred == y).double().mean() * 100)


def ncm_accuracy(z: torch.Tensor, y: torch.Tensor) -> float:
    """Leave-one-out nearest-class-mean top-1 (percent) of ``z [N, D]``, labels ``y [N]``: each image is
    compared (cosine, after centring) with the class means of the *other* images."""
    z = normalise(z.double())
    num_classes = int(y.max()) + 1
    sums = torch.zeros(num_classes, z.shape[1], dtype=torch.float64).index_add_(0, y, z)  # [K, D]
    counts = torch.bincount(y, minlength=num_classes).double()  # [K]
    sim = z @ F.normalize(sums / counts.clamp_min(1)[:, None], dim=1).T  # [N, K]: other classes' means
    own = F.normalize((sums[y] - z) / (counts[y] - 1).clamp_min(1)[:, None], dim=1)  # [N, D]: own class, less z
    sim[torch.arange(len(y)), y] = (z * own).sum(1)
    alone = counts[y] < 2  # an image alone in its class has no class mean to match
    sim[alone, y[alone]] = float("-inf")
    sim[:, counts == 0] = float("-inf")
    return float((sim.argmax(1) == y).double().mean() * 100)


def token_labels(masks: torch.Tensor, grid: tuple[int, int], num_classes: int, ignore: int = 255) -> torch.Tensor:
    """``[M, H, W]`` masks -> ``[M, h, w]``: each token's majority class over its patch (ignored pixels do not
    vote; a patch with no labelled pixel is ``ignore``)."""
    m = masks.long().clone()
    valid = (m >= 0) & (m < num_classes)
    m[~valid] = num_classes
    onehot = F.one_hot(m, num_classes + 1).permute(0, 3, 1, 2).double()[:, :num_classes]  # [M, K, H, W]
    counts = F.adaptive_avg_pool2d(onehot, grid)  # [M, K, h, w]: share of each class in the patch
    labels = counts.argmax(1)
    return labels.masked_fill(counts.sum(1) == 0, ignore)


def token_ncm_miou(tokens: torch.Tensor, masks: torch.Tensor, num_classes: int) -> float:
    """Leave-one-image-out token-level nearest-class-mean mIoU (percent): ``tokens [M, C, h, w]``, masks
    ``[M, H, W]``; each image's tokens are assigned the nearest (cosine, after centring) class mean of the other
    images' tokens, and IoU is accumulated over all tokens as mmseg's metric does."""
    from aselect_bench.metrics import SegmentationMetrics

    m, c, h, w = tokens.shape
    labels = token_labels(masks, (h, w), num_classes)  # [M, h, w]
    z = normalise(tokens.double().permute(0, 2, 3, 1).reshape(-1, c)).reshape(m, h * w, c)
    flat = labels.reshape(m, h * w)
    per_image = torch.zeros(m, num_classes, c, dtype=torch.float64)
    counts = torch.zeros(m, num_classes, dtype=torch.float64)
    for i in range(m):
        keep = flat[i] < num_classes
        per_image[i].index_add_(0, flat[i][keep], z[i][keep])
        counts[i] = torch.bincount(flat[i][keep], minlength=num_classes).double()
    metric = SegmentationMetrics(num_classes)
    for i in range(m):
        rest_sum, rest_count = per_image.sum(0) - per_image[i], counts.sum(0) - counts[i]
        means = F.normalize(rest_sum / rest_count.clamp_min(1)[:, None], dim=1)
        sim = (z[i] @ means.T).masked_fill(rest_count[None] == 0, float("-inf"))
        metric.update(sim.argmax(1).reshape(1, h, w), labels[i][None])
    return float(metric.compute()["mIoU"])


class LabelledSelector(Selector):
    uses_labels = True
    images = "labelled"


class KNN(LabelledSelector):
    """Leave-one-out k-NN accuracy (k = 10, cosine) of pooled features on the labelled held-out images: the
    standard cheap probe of self-supervised features (Wu et al. 2018; DINO, Caron et al. 2021)."""

    task = "fgvc"

    def __init__(self, k: int = 10):
        self.k = k

    @property
    def settings(self) -> dict:
        return {"k": self.k}

    def score(self, features: torch.Tensor, labels: Labels) -> float:
        return knn_accuracy(pooled(features), labels.targets, self.k)


class NCM(LabelledSelector):
    """Leave-one-out nearest-class-mean accuracy of pooled features on the labelled held-out images (NCM,
    Mensink et al., TPAMI 2013): a linear classifier with no training."""

    task = "fgvc"

    def score(self, features: torch.Tensor, labels: Labels) -> float:
        return ncm_accuracy(pooled(features), labels.targets)


class TokenNCM(LabelledSelector):
    """Token-level nearest-class-mean mIoU on the selection split (leave one image out): the segmentation
    analogue of NCM, each token labelled by its patch's majority class."""

    task = "ade20k"

    def score(self, features: torch.Tensor, labels: Labels) -> float:
        return token_ncm_miou(features, labels.targets, labels.num_classes)


register("knn")(lambda settings: KNN())
register("ncm")(lambda settings: NCM())
register("token-ncm")(lambda settings: TokenNCM())
