"""Shared by the PixArt, Flux and Sana tests: hooks on diffusers' own forward, tiny text encoders built offline."""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager

import torch

from aselect_bench import load_backbone


@contextmanager
def captured(outputs: dict, inputs: dict | None = None):
    """Capture during a forward: ``{name: output}`` of each module in ``outputs`` and ``{name: first positional
    input}`` of each module in ``inputs``; hooks removed afterwards."""
    seen, handles = {}, []
    for name, module in outputs.items():
        handles.append(module.register_forward_hook(lambda m, a, o, name=name: seen.__setitem__(name, o)))
    for name, module in (inputs or {}).items():
        handles.append(module.register_forward_pre_hook(lambda m, a, name=name: seen.__setitem__(name, a[0])))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


def as_grid(tokens: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
    """Tokens ``[B, N, C]`` in row-major order (token ``r * gw + c`` at ``(r, c)``) -> ``[B, C, gh, gw]``."""
    return tokens.reshape(tokens.shape[0], gh, gw, -1).permute(0, 3, 1, 2)


def check_against(backbone, images, timestep, noise, reference: dict) -> None:
    """Every tap of ``reference`` (``{tap: [B, C, h, w]}``) equals ours."""
    taps = list(reference)
    ours = backbone.extract(images, timestep, taps, noise=noise)
    assert list(ours) == taps
    for tap in taps:
        assert ours[tap].shape == reference[tap].shape, tap
        torch.testing.assert_close(ours[tap], reference[tap], rtol=1e-4, atol=1e-5, msg=tap)


def load_quietly(source, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_backbone(str(source), **kwargs)


def tiny_t5(width: int):
    """A T5 tokenizer (a Unigram vocabulary written here) and a 2-layer ``T5EncoderModel`` of ``width``."""
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581a", -1.0), ("\u2581b", -2.0), ("a", -3.0),
             ("b", -3.0), ("\u2581", -4.0)]
    torch.manual_seed(width + 1)
    encoder = T5EncoderModel(T5Config(vocab_size=len(vocab), d_model=width, d_kv=8, d_ff=2 * width, num_layers=2,
                                      num_heads=2, decoder_start_token_id=0))
    return T5Tokenizer(vocab=vocab, extra_ids=0), encoder.eval()


def tiny_gemma(width: int):
    """A Gemma tokenizer (BPE, written here; BOS added) and a 2-layer ``Gemma2Model`` of ``width``."""
    from transformers import Gemma2Config, Gemma2Model, GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4, "a": 5, "b": 6, "\u2581": 7}
    torch.manual_seed(width + 2)
    encoder = Gemma2Model(Gemma2Config(vocab_size=len(vocab), hidden_size=width, intermediate_size=2 * width,
                                       num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                       pad_token_id=0, bos_token_id=2, eos_token_id=1))
    return GemmaTokenizer(vocab=vocab, merges=[], add_bos_token=True), encoder.eval()


def tiny_clip_text(folder, width: int):
    """A CLIP tokenizer and a ``CLIPTextModel`` (pooled output of ``width``), as Flux's first text encoder."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder.mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2, "a": 3, "a</w>": 4, "b</w>": 5}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>",
                              model_max_length=77)
    torch.manual_seed(width)
    encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    return tokenizer, encoder.eval()


def save_text(folder, tokenizer, encoder, suffix: str = "") -> None:
    """``folder/tokenizer{suffix}`` and ``folder/text_encoder{suffix}``, as a pipeline saves them."""
    tokenizer.save_pretrained(folder / f"tokenizer{suffix}")
    encoder.save_pretrained(folder / f"text_encoder{suffix}")


def drop_tensor(folder, name: str) -> None:
    """Remove tensor ``name`` from the safetensors checkpoint in ``folder``."""
    from safetensors.torch import load_file, save_file

    path = next(folder.glob("*.safetensors"))
    state = load_file(path)
    state.pop(name)
    save_file(state, path)
