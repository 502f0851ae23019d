"""What the image demo models share: their VAE, and CLIP text encoders with a
byte-level tokenizer made offline (a generated vocabulary, no merges).

Used by `diffusion.py` (SD1.5, SDXL) and `flow.py` (Flux, SD3).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

_TEXT_MAX_LENGTH = 77
_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"


def demo_vae(scaling_factor: float, **overrides: Any) -> torch.nn.Module:
    """The demo VAE: two blocks, so latents are half the image's size."""
    from diffusers import AutoencoderKL

    config: dict[str, Any] = {
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": (32, 64),
        "down_block_types": ("DownEncoderBlock2D", "DownEncoderBlock2D"),
        "up_block_types": ("UpDecoderBlock2D", "UpDecoderBlock2D"),
        "latent_channels": 4,
        "sample_size": 64,
        "scaling_factor": scaling_factor,
    }
    config.update(overrides)
    return AutoencoderKL(**config)


def clip_text_encoder(with_projection: bool, hidden_act: str) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    vocab = _bpe_vocab()
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=5,
        num_attention_heads=4,
        max_position_embeddings=_TEXT_MAX_LENGTH,
        layer_norm_eps=1e-5,
        hidden_act=hidden_act,
        projection_dim=32,
        bos_token_id=vocab[_BOS],
        # A real end-of-text id makes the pooled output come from the first EOS
        # token rather than from the legacy "highest id" rule.
        eos_token_id=vocab[_EOS],
        pad_token_id=vocab[_EOS],
    )
    model_class = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return model_class(config)


# --- tokenizer ----------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by CLIP's BPE.

    Insertion order is CLIP's vocabulary order: printable bytes first ("!" is
    id 0, "a" is 64), then the others mapped above U+0100.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    shift = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shift)
            shift += 1
    return table


def _bpe_vocab() -> dict[str, int]:
    """A merge-free CLIP vocabulary: every byte alone and word-final, plus specials.

    The ids follow the real CLIP layout (bytes, then word-final bytes, then the
    two special tokens last), so any text tokenizes to one token per byte.
    """
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({f"{c}</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab[_BOS] = len(vocab)
    vocab[_EOS] = len(vocab)
    return vocab


def write_bpe_files(folder: Path) -> None:
    """Write ``vocab.json`` and ``merges.txt`` into ``folder``.

    transformers 5 saves only ``tokenizer.json``; transformers 4's slow
    CLIPTokenizer needs the two BPE files, so a saved demo folder carries both.
    """
    vocab_text = json.dumps(_bpe_vocab(), ensure_ascii=False)
    (folder / "vocab.json").write_text(vocab_text, encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")


def clip_tokenizer() -> Any:
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        write_bpe_files(folder)
        return CLIPTokenizer(
            str(folder / "vocab.json"),
            str(folder / "merges.txt"),
            model_max_length=_TEXT_MAX_LENGTH,
        )
