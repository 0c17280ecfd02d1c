"""Import mmsegmentation 1.2.2 as the parity reference (tests only; the product never imports it).

mmseg imports with mmcv-lite 2.1.0 except for ``mmcv._ext``, mmcv's compiled ops, which mmcv-lite does
not ship: ``mmcv.utils.ext_loader.load_ext`` imports it and checks that each op name is an attribute.
While mmseg is imported, a stub module answers every such name with a placeholder; it is removed from
``sys.modules`` right after, so nothing else sees it. The parts compared here (UPerHead, FCNHead,
Feature2Pyramid, IoUMetric, slide inference, transforms, dataset metainfo) never call a compiled op.
"""

from __future__ import annotations

import importlib
import sys
import types

import pytest

MODULES = ("mmseg.models", "mmseg.evaluation", "mmseg.datasets", "mmseg.models.segmentors.encoder_decoder")


def _stub() -> types.ModuleType:
    stub = types.ModuleType("mmcv._ext")

    def placeholder(name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def op(*args, **kwargs):
            raise RuntimeError(f"mmcv._ext.{name} is a test stub: compiled mmcv ops are not available")

        return op

    stub.__getattr__ = placeholder
    return stub


def import_mmseg() -> types.SimpleNamespace:
    """mmseg's reference pieces; skips the test when the ``parity`` extra is not installed."""
    pytest.importorskip("mmseg", reason="the parity extra (mmsegmentation 1.2.2, mmcv-lite, mmengine) is not installed")
    pytest.importorskip("mmcv", reason="the parity extra (mmcv-lite) is not installed")
    if not all(m in sys.modules for m in MODULES):
        previous = sys.modules.get("mmcv._ext")
        sys.modules["mmcv._ext"] = previous or _stub()
        try:
            for name in MODULES:
                importlib.import_module(name)
        finally:
            if previous is None:
                del sys.modules["mmcv._ext"]
    from mmseg.datasets import ADE20KDataset
    from mmseg.datasets.transforms import transforms as seg_transforms
    from mmseg.evaluation.metrics import IoUMetric
    from mmseg.models.decode_heads import FCNHead, UPerHead
    from mmseg.models.necks import Feature2Pyramid
    from mmseg.models.segmentors.encoder_decoder import EncoderDecoder

    return types.SimpleNamespace(UPerHead=UPerHead, FCNHead=FCNHead, Feature2Pyramid=Feature2Pyramid,
                                 IoUMetric=IoUMetric, ADE20KDataset=ADE20KDataset, EncoderDecoder=EncoderDecoder,
                                 transforms=seg_transforms)
