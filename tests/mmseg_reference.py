"""Import mmsegmentation 1.2.2 as a reference (tests only): mmcv-lite lacks the compiled ``mmcv._ext``.

The stub is a module whose attributes are placeholders: the import chain of mmseg only looks them up;
the parts we compare (UPerHead, FCNHead, Feature2Pyramid, IoUMetric) never call compiled ops.
"""

from __future__ import annotations

import sys
import types

import pytest


def import_mmseg():
    pytest.importorskip("mmcv", reason="the parity extra (mmsegmentation, mmcv-lite) is not installed")
    if "mmcv._ext" not in sys.modules:
        stub = types.ModuleType("mmcv._ext")
        def placeholder(name):
            if name.startswith("__"):
                raise AttributeError(name)
            return lambda *args, **kwargs: None  # a compiled op that is never called here

        stub.__getattr__ = placeholder
        sys.modules["mmcv._ext"] = stub
    import mmseg.models  # noqa: F401 - registers the heads
    from mmseg.evaluation.metrics import IoUMetric
    from mmseg.models.decode_heads import FCNHead, UPerHead
    from mmseg.models.necks import Feature2Pyramid

    return types.SimpleNamespace(UPerHead=UPerHead, FCNHead=FCNHead, Feature2Pyramid=Feature2Pyramid,
                                 IoUMetric=IoUMetric)
