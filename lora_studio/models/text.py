"""Prompt → CLIP embeddings with A1111's clip skip, computed by hand.

diffusers 0.42's `clip_skip` argument reaches for `text_encoder.text_model`, which transformers 5
removed, so the pipeline is always given `prompt_embeds` we compute here.
"""

from __future__ import annotations


def hidden_states_with_clip_skip(text_encoder, input_ids, clip_skip: int = 1):
    """A1111 'Clip skip: N': take the hidden state N layers from the end, then the final layer norm."""
    if clip_skip <= 1:
        return text_encoder(input_ids)[0]
    out = text_encoder(input_ids, output_hidden_states=True)
    # hidden_states[-1] is the last layer's output; A1111 re-applies final_layer_norm to earlier ones.
    hidden = out.hidden_states[-clip_skip]
    # Under `accelerate launch` a trained text encoder is wrapped in DDP, which hides its layers.
    return getattr(text_encoder, "module", text_encoder).final_layer_norm(hidden)


def tokenize(tokenizer, texts: list[str]):
    """Pad/truncate to CLIP's 77 tokens, the shape SD1.5 was trained with."""
    return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids
