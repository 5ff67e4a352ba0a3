"""Tag captions: trigger word, keep-tokens shuffle, tag dropout, batch edits, kohya tag counts."""

from __future__ import annotations

import random

from frame_helpers import draw_frame
from lora_studio.data.captions import (
    add_tag, count_clip_tokens, ensure_trigger_first, join_tags, remove_tag, replace_tag, shuffle_and_drop,
    split_tags, tag_frequency,
)
from lora_studio.data.frames import scan_frames
from lora_studio.models.tiny import load_clip_tokenizer

TAGS = ["tibbie", "sheep", "pink bow", "white background", "standing", "smile", "looking at viewer", "solo"]


def test_captions_split_into_tags_and_join_back_as_kohya_writes_them():
    tags = split_tags(" tibbie,sheep ,, pink bow,\nsolo, ")
    assert tags == ["tibbie", "sheep", "pink bow", "solo"]
    assert join_tags(tags) == "tibbie, sheep, pink bow, solo"
    assert split_tags("") == []


def test_the_trigger_word_is_put_first_once():
    assert ensure_trigger_first(["sheep", "smile"], "tibbie") == ["tibbie", "sheep", "smile"]
    assert ensure_trigger_first(["sheep", "Tibbie", "smile"], "tibbie") == ["tibbie", "sheep", "smile"]
    assert ensure_trigger_first(["tibbie", "sheep"], "tibbie") == ["tibbie", "sheep"]
    assert ensure_trigger_first(["sheep"], "") == ["sheep"]


def test_keep_tokens_are_never_shuffled_or_dropped():
    rng = random.Random(0)
    for _ in range(300):
        out = shuffle_and_drop(TAGS, keep_tokens=2, shuffle=True, tag_dropout=0.5, rng=rng)
        assert out[:2] == ["tibbie", "sheep"]
        assert set(out[2:]) <= set(TAGS[2:])


def test_shuffle_changes_the_order_of_the_other_tags_but_keeps_them_all():
    rng = random.Random(0)
    orders = {tuple(shuffle_and_drop(TAGS, 1, True, 0.0, rng)) for _ in range(50)}
    assert len(orders) > 10
    assert all(sorted(order) == sorted(TAGS) and order[0] == "tibbie" for order in orders)
    assert shuffle_and_drop(TAGS, 1, False, 0.0, rng) == TAGS


def test_tag_dropout_drops_about_its_share_of_tags():
    rng = random.Random(1234)
    trials, dropout = 2000, 0.3
    kept = sum(len(shuffle_and_drop(TAGS, 1, True, dropout, rng)) - 1 for _ in range(trials))
    share_kept = kept / (trials * (len(TAGS) - 1))
    assert abs(share_kept - (1 - dropout)) < 0.02


def test_the_same_seed_gives_the_same_captions():
    first = [shuffle_and_drop(TAGS, 1, True, 0.2, random.Random(7)) for _ in range(3)]
    again = [shuffle_and_drop(TAGS, 1, True, 0.2, random.Random(7)) for _ in range(3)]
    assert first == again


def test_tag_frequency_matches_kohyas_metadata(tmp_path):
    (tmp_path / "6_tibbie").mkdir()
    for i in range(3):
        draw_frame(tmp_path / "6_tibbie" / f"{i}.png", i)
        (tmp_path / "6_tibbie" / f"{i}.txt").write_text("tibbie, Sheep" + (", smile" if i else ""))
    draw_frame(tmp_path / "6_tibbie" / "3.png", 3)  # no caption: counts nothing

    frequency = tag_frequency(scan_frames(tmp_path).frames)

    # Counted once per image (not per repeat), lowercased, keyed by the folder name.
    assert frequency == {"6_tibbie": {"tibbie": 3, "sheep": 3, "smile": 2}}


def test_batch_edits_return_new_lists_and_leave_the_input_alone():
    tags = ["sheep", "smile", "solo"]

    assert add_tag(tags, "tibbie") == ["sheep", "smile", "solo", "tibbie"]
    assert add_tag(tags, "tibbie", first=True) == ["tibbie", "sheep", "smile", "solo"]
    assert add_tag(tags, "Smile") == tags  # already there
    assert add_tag(tags, "solo", first=True) == ["solo", "sheep", "smile"]
    assert remove_tag(tags + ["Smile"], "smile") == ["sheep", "solo"]
    assert replace_tag(tags, "smile", "open mouth") == ["sheep", "open mouth", "solo"]
    assert replace_tag(tags, "smile", "sheep") == ["sheep", "solo"]  # no duplicate left behind
    assert replace_tag(tags, "smile", "") == ["sheep", "solo"]
    assert tags == ["sheep", "smile", "solo"]


def test_clip_token_count_tells_when_a_caption_is_too_long():
    tokenizer = load_clip_tokenizer()

    assert count_clip_tokens("tibbie, sheep", tokenizer) == len(tokenizer.tokenize("tibbie, sheep"))
    assert count_clip_tokens("sheep", tokenizer) == 1
    assert count_clip_tokens("", tokenizer) == 0
    assert count_clip_tokens(", ".join(["white background"] * 30), tokenizer) > 75


def test_core_tags_are_the_ones_every_caption_carries_besides_the_trigger():
    from lora_studio.data.captions import core_tags

    captions = [["tibbie", "sheep", "Pink Bow", "standing"], ["tibbie", "sheep", "lying on beach", "pink  bow"],
                ["sheep", "tibbie", "pink bow", "close-up"]]
    assert core_tags(captions, trigger="tibbie") == ["sheep", "Pink Bow"]
    assert core_tags(captions) == ["tibbie", "sheep", "Pink Bow"]
    assert core_tags(captions[:1], trigger="tibbie") == []  # one caption: everything would be "core"
    assert core_tags(captions + [["tibbie", "standing"]], trigger="tibbie") == []
