"""Text conditioning of the text-to-image families (SD3, PixArt, Flux, Sana): the empty prompt through the
folder's own text encoders, computed once and cached on disk, or zeros of the caption shapes with a one-line
warning when the folder has no text encoders.

:class:`Conditioning` holds the tensors (``[1, ...]`` each, broadcast over a batch) and their ``source``
(``"zeros"`` or ``"empty-prompt-<key>"``, part of the backbone's fingerprint); :func:`cached_conditioning` is
the on-disk cache; :func:`load_text_model` and :func:`load_tokenizer` load a folder's text encoder strictly.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from aselect_bench.errors import UserError

ZEROS = "zeros"


class Conditioning:
    """Fixed text conditioning ``{name: tensor [1, ...]}`` (e.g. ``embeds [1, S, C]``, ``mask [1, S]``,
    ``pooled [1, P]``) and where it came from (``source``)."""

    def __init__(self, tensors: dict[str, torch.Tensor], source: str):
        self.tensors, self.source = dict(tensors), source
        self._placed = None  # (device, dtype, tensors): moved once, not at every call

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def on(self, device, dtype) -> dict[str, torch.Tensor]:
        """The tensors on ``device`` in ``dtype``."""
        if self._placed is None or self._placed[:2] != (device, dtype):
            self._placed = (device, dtype, {k: v.to(device, dtype) for k, v in self.tensors.items()})
        return self._placed[2]


def attention_bias(mask: torch.Tensor) -> torch.Tensor:
    """A caption mask ``[B, S]`` (1 keep, 0 drop) as the additive bias ``[B, 1, S]`` diffusers' transformers build."""
    return ((1 - mask) * -10000.0).unsqueeze(1)


def zeros_with_warning(family: str, folder: Path, missing: list[str], tensors: dict) -> Conditioning:
    """Zero conditioning of the given shapes, after one warning line naming what the folder lacks."""
    warnings.warn(f"{family} folder {folder} has no {', '.join(p + '/' for p in missing)}: conditioning on zeros "
                  f"instead of the empty prompt (add the pipeline's text encoders and tokenizers for it)",
                  stacklevel=3)
    return Conditioning(tensors, ZEROS)


def parts_present(folder: Path, parts) -> list[str]:
    """Which of the sub-folders ``parts`` the pipeline folder holds."""
    return [p for p in parts if (folder / p).is_dir()]


def cached_conditioning(kind: str, folder: Path, parts, settings, compute: Callable[[], dict]) -> Conditioning:
    """``compute()`` (``{name: tensor}``, float32) once per set of text encoders: cached under
    ``cache_dir()/<kind>-empty-prompt/<key>.pt``, keyed by the identities (path, size, mtime) of the files in
    ``folder/<part>`` for each of ``parts`` and by ``settings`` (shapes, token lengths), so the text encoders are
    loaded once and then dropped."""
    from aselect_bench.backbones.checkpoints import folder_digest
    from aselect_bench.cache import cache_dir
    from aselect_bench.io import atomic_write_bytes

    blob = json.dumps([folder_digest(*(folder / p for p in parts)), settings])
    key = hashlib.sha256(blob.encode()).hexdigest()[:20]
    path = cache_dir() / f"{kind}-empty-prompt" / f"{key}.pt"
    if path.exists():
        return Conditioning(torch.load(path, weights_only=True), f"empty-prompt-{key}")
    tensors = {k: v.detach().float().cpu() for k, v in compute().items()}
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return Conditioning(tensors, f"empty-prompt-{key}")


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def load_tokenizer(folder: Path, family: str, fix: str):
    """The tokenizer saved in ``folder`` (``AutoTokenizer``), or one clear error."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, TypeError) as err:
        raise UserError(f"could not load the {family} tokenizer in {folder}: {_first_line(err)}; {fix}") from None


def load_text_model(cls, folder: Path, family: str, fix: str):
    """``cls.from_pretrained(folder)`` on the CPU in float32 (eval mode), refusing any missing or wrongly shaped
    tensor: a partly random text encoder would silently change the conditioning."""
    try:
        model, info = cls.from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
    except (OSError, ValueError) as err:
        raise UserError(f"could not load the {family} text encoder in {folder}: {_first_line(err)}; {fix}") from None
    bad = sorted(info.get("missing_keys", [])) + [str(k[0]) for k in info.get("mismatched_keys", [])]
    if bad:
        raise UserError(f"{folder} does not match its config: {len(bad)} missing or wrongly shaped tensors "
                        f"(e.g. {', '.join(bad[:3])}); {fix}")
    return model.eval()


@torch.inference_mode()
def encode_masked(tokenizer, encoder, length: int, padding_side: str | None = None) -> dict[str, torch.Tensor]:
    """``""`` padded to ``length`` tokens through a T5 or Gemma encoder with its attention mask, as PixArt's and
    Sana's pipelines encode the empty (negative) prompt: ``{"embeds": [1, length, C], "mask": [1, length]}``."""
    if padding_side is not None:
        tokenizer.padding_side = padding_side
    tokens = tokenizer([""], padding="max_length", max_length=length, truncation=True, add_special_tokens=True,
                       return_tensors="pt")
    embeds = encoder(tokens.input_ids, attention_mask=tokens.attention_mask)[0]
    return {"embeds": embeds.float(), "mask": tokens.attention_mask.float()}
