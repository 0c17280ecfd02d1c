"""Frozen diffusion-transformer backbones with feature taps."""

from aselect_bench.backbones.backbone import Backbone
from aselect_bench.backbones.loading import load_backbone
from aselect_bench.backbones.noise import DDPMNoise, NoiseProcess, RectifiedFlowNoise
from aselect_bench.backbones.registry import MODELS, ModelSpec
from aselect_bench.backbones.taps import COMPONENTS, Tap, grid_taps, parse_tap, parse_taps

__all__ = [
    "Backbone", "load_backbone", "NoiseProcess", "DDPMNoise", "RectifiedFlowNoise", "MODELS", "ModelSpec",
    "COMPONENTS", "Tap", "parse_tap", "parse_taps", "grid_taps",
]
