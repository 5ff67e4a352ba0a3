"""Text-encoder outputs computed once, for runs whose text encoder is frozen and whose captions never change.

With te_lr = 0 the text encoder is a fixed function, so a caption that is the same every step (no
shuffling, no tag dropout) has the same embedding every step: the run computes each caption once
and the text encoder can leave the GPU. kohya's --cache_text_encoder_outputs makes the same trade
and has the same condition (it refuses shuffle_caption and caption dropout).
"""

from __future__ import annotations

from lora_studio.config import TrainConfig

CHUNK = 16  # captions per text-encoder call while filling the cache


def captions_are_fixed(config: TrainConfig) -> bool:
    """True when every step gives a frame the same caption: no shuffling and no tag dropout."""
    return not config.shuffle_caption and not config.tag_dropout


class CaptionEmbeddings:
    """Hidden states (with clip skip) for a fixed set of captions, on the device the UNet trains on."""

    def __init__(self, text_encoder, tokenizer, clip_skip: int, captions: list[str], device):
        import torch

        from lora_studio.models.text import hidden_states_with_clip_skip, tokenize

        unique = list(dict.fromkeys(captions))
        self.embeddings: dict = {}
        with torch.no_grad():
            for start in range(0, len(unique), CHUNK):
                chunk = unique[start:start + CHUNK]
                ids = tokenize(tokenizer, chunk).to(device)
                hidden = hidden_states_with_clip_skip(text_encoder, ids, clip_skip)
                self.embeddings.update(zip(chunk, hidden))

    def __call__(self, captions: list[str]):
        """The batch's encoder hidden states, as the text encoder would have returned them."""
        import torch

        return torch.stack([self.embeddings[c] for c in captions])
