"""What a family adapter gives :class:`~aselect_bench.backbones.backbone.Backbone` (the shared tap mechanism).

The backbone owns the common parts once: encoding, noising, running the stacks of blocks in order up to the
deepest tap (and, inside the tap's block, only up to the tap's stage: ``taps.stage_of``), and laying image
tokens out on the patch grid. A family owns what flows between its blocks:

- ``start(x_t [B, C, H, W], t [B], class_labels) -> state`` (patch embedding, timestep and text embeddings);
- ``run_block(i, state, wanted) -> (next state or None, {component: image tokens [B, N, D]})`` for each stack
  named by ``stacks()`` (``{stack: (number of blocks, runner)}``, in execution order);
- ``num_blocks``, ``patch_size`` (input pixels per token side), ``sample_size`` (native input size in input
  pixels), ``hidden_size``, ``components``, and ``identity()`` (what beyond weights and configs changes features).
"""

from __future__ import annotations

from aselect_bench.backbones.conditioning import Conditioning
from aselect_bench.backbones.taps import BLOCKS, COMPONENTS
from aselect_bench.errors import UserError


class Family:
    """Base of the family adapters: one stack, ``blocks``, run by ``run_block``; nothing extra in the identity."""

    components = COMPONENTS
    label = "this model"

    def stacks(self) -> dict:
        """``{stack: (number of blocks, runner)}`` in the order the model runs them."""
        return {BLOCKS: (self.num_blocks, self.run_block)}

    def block_counts(self) -> dict[str, int]:
        return {stack: count for stack, (count, _) in self.stacks().items()}

    def identity(self) -> dict:
        return {}


class TextFamily(Family):
    """A text-to-image family conditioned on a fixed :class:`Conditioning` (the empty prompt, or zeros)."""

    def __init__(self, conditioning: Conditioning):
        self.conditioning = conditioning

    def identity(self) -> dict:
        """What, beyond the weights and configs, changes the features: the conditioning's source."""
        return {"conditioning": self.conditioning.source}

    def refuse_class_labels(self, class_labels) -> None:
        if class_labels is not None:
            raise UserError(f"class_labels are for class-conditional DiTs; {self.label} is conditioned on the empty "
                            f"prompt, leave class_labels out")


def random_modules(spec, seed: int, transformer_cls, vae_cls):
    """A registered model's transformer and VAE (``None`` in pixel space) with random weights seeded by ``seed``."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = transformer_cls(**spec.transformer)
        vae = vae_cls(**spec.vae) if spec.vae else None
    return transformer, vae


def weights_with_text(parts, text_parts) -> str:
    """The folder's weights id, plus ``+text@<digest>`` of the text encoders and tokenizers it holds."""
    from aselect_bench.backbones.checkpoints import folder_digest
    from aselect_bench.backbones.conditioning import parts_present

    text_dirs = [parts.root / p for p in parts_present(parts.root, text_parts)]
    return parts.weights_id + (f"+text@{folder_digest(*text_dirs)}" if text_dirs else "")
