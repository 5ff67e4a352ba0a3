"""A1111 prompt syntax: LoRA tags, attention weights, 75-token chunks, Prompt S/R."""

from __future__ import annotations

import pytest

from lora_studio.errors import UserError
from lora_studio.generate.prompt import (CHUNK_TOKENS, parse_attention, prompt_chunks, prompt_sr, set_lora_tag,
                                         split_lora_tags)
from lora_studio.models.tiny import load_clip_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_clip_tokenizer()


def test_lora_tags_select_adapters_and_are_removed_from_the_text_clip_sees():
    text, tags = split_lora_tags("masterpiece, 1girl, tibbie, <lora:tibbie-000003:0.6>, sitting on tree")
    assert text == "masterpiece, 1girl, tibbie, , sitting on tree"  # A1111 leaves the commas
    assert [(t.name, t.te_weight, t.unet_weight) for t in tags] == [("tibbie-000003", 0.6, 0.6)]


def test_lora_tag_weights_default_to_one_and_may_differ_for_text_encoder_and_unet():
    _, tags = split_lora_tags("<lora:a> <lora:b:0.5:1.2> <lora:c:te=0.3:unet=0.9> <lora:d:0>")
    assert [(t.name, t.te_weight, t.unet_weight) for t in tags] == [
        ("a", 1.0, 1.0), ("b", 0.5, 1.2), ("c", 0.3, 0.9), ("d", 0.0, 0.0)]
    assert tags[3].is_off and not tags[0].is_off


def test_a_bad_lora_weight_or_network_type_is_a_clear_error():
    with pytest.raises(UserError, match="not a number"):
        split_lora_tags("<lora:tibbie:strong>")
    with pytest.raises(UserError, match="hypernet"):
        split_lora_tags("<hypernet:thing:1>")


def test_the_epoch_and_weight_of_a_lora_tag_can_be_rewritten_in_place():
    prompt = "1girl, <lora:tibbie-000001:0>, sheep"
    assert set_lora_tag(prompt, 0, name="tibbie-000004", weight=0.3) == "1girl, <lora:tibbie-000004:0.3>, sheep"
    assert set_lora_tag(prompt, 0, weight=1.0) == "1girl, <lora:tibbie-000001:1>, sheep"


@pytest.mark.parametrize("text, expected", [
    # the examples of A1111's prompt_parser.parse_prompt_attention documentation
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.1 * 1.1 * 1.3), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
      (", sun, ", 1.1), ("sky", 1.1 ** 4), (".", 1.1)]),
    ("(word:1.2), [small]", [("word", 1.2), (", ", 1.0), ("small", 1 / 1.1)]),
    ("a BREAK b", [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]),
])
def test_attention_weights_follow_a1111(text, expected):
    got = parse_attention(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


def test_a_weighted_word_weights_exactly_its_tokens(tokenizer):
    (chunk,) = prompt_chunks(tokenizer, "a (red apple:1.3), tree")
    assert len(chunk.tokens) == CHUNK_TOKENS + 2 and chunk.tokens[0] == tokenizer.bos_token_id
    words = tokenizer.convert_ids_to_tokens(chunk.tokens[1:6])
    assert words == ["a</w>", "red</w>", "apple</w>", ",</w>", "tree</w>"]
    assert chunk.weights[1:6] == pytest.approx([1.0, 1.3, 1.3, 1.0, 1.0])
    assert set(chunk.tokens[6:]) == {tokenizer.eos_token_id}  # SD1 pads with the end token


def test_long_prompts_become_75_token_chunks_that_break_after_a_comma(tokenizer):
    # 22·2 + 8·3 words + 29 commas = 97 tokens; token 75 falls inside a 'big green tree'
    prompt = ", ".join(["red apple"] * 22 + ["big green tree"] * 8)
    chunks = prompt_chunks(tokenizer, prompt)
    assert len(chunks) == 2
    first = tokenizer.convert_ids_to_tokens(chunks[0].tokens)
    # the first chunk ends at a comma, not in the middle of 'big green tree'; the rest is padding
    body = [t for t in first[1:-1] if t != "<|endoftext|>"]
    assert body[-1] == ",</w>" and len(body) <= CHUNK_TOKENS
    second = [t for t in tokenizer.convert_ids_to_tokens(chunks[1].tokens)[1:] if t != "<|endoftext|>"]
    assert second[:3] == ["big</w>", "green</w>", "tree</w>"]
    assert len(body) + len(second) == 97  # nothing lost, nothing added


def test_break_starts_a_new_chunk(tokenizer):
    chunks = prompt_chunks(tokenizer, "tibbie, sheep BREAK beach")
    assert len(chunks) == 2
    assert tokenizer.convert_ids_to_tokens(chunks[1].tokens[1:2]) == ["beach</w>"]


def test_prompt_sr_replaces_every_occurrence_in_prompt_and_negative():
    prompt, negative = prompt_sr("a <lora:t-000001:0>, t-000001 style", "no t-000001", "000001", "000004")
    assert prompt == "a <lora:t-000004:0>, t-000004 style" and negative == "no t-000004"


def test_prompt_sr_needs_the_first_value_in_the_prompt():
    with pytest.raises(UserError, match="did not find 'standing'"):
        prompt_sr("1girl, sitting", "lowres", "standing", "lying")


def test_prompt_editing_and_alternation_are_refused_rather_than_misread(tokenizer):
    for prompt in ("1girl, [sitting:standing:0.5]", "1girl, [sheep|goat]"):
        with pytest.raises(UserError, match="not supported"):
            prompt_chunks(tokenizer, prompt)
    assert len(prompt_chunks(tokenizer, "1girl, \\[sitting:standing\\], [small]")) == 1
