"""Tag captions: parsing, the trigger word, per-step shuffle and dropout, batch edits, tag counts.

Captions are booru-style comma-separated tags, as kohya's sd-scripts read them. Every function here
is pure: it returns a new list and leaves its input alone, so the review UI can preview an edit.
"""

from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from lora_studio.data.frames import Frame

_SEPARATORS = re.compile(r"[,\n]")


def _key(tag: str) -> str:
    # CLIP's tokenizer lowercases and collapses whitespace, so "Tibbie" and "tibbie " are one tag to the model.
    return " ".join(tag.split()).lower()


def split_tags(caption: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']: tags stripped, empty ones dropped, order kept."""
    return [tag.strip() for tag in _SEPARATORS.split(caption or "") if tag.strip()]


def join_tags(tags: Iterable[str]) -> str:
    """['a', 'b'] -> 'a, b', the form kohya feeds the text encoder."""
    return ", ".join(tags)


def ensure_trigger_first(tags: list[str], trigger: str) -> list[str]:
    """Put the trigger word first (adding it if missing, dropping copies further on); no trigger: unchanged."""
    trigger_tags = split_tags(trigger)
    if not trigger_tags:
        return list(tags)
    wanted = {_key(t) for t in trigger_tags}
    return trigger_tags + [t for t in tags if _key(t) not in wanted]


def shuffle_and_drop(tags: list[str], keep_tokens: int, shuffle: bool, tag_dropout: float,
                     rng: random.Random) -> list[str]:
    """The per-step caption: the first keep_tokens tags stay put; the rest are shuffled and each dropped with p=tag_dropout."""
    keep_tokens = max(0, keep_tokens)
    kept, rest = list(tags[:keep_tokens]), list(tags[keep_tokens:])
    # Same order as kohya's process_caption: shuffle, then dropout.
    if shuffle:
        rng.shuffle(rest)
    if tag_dropout > 0:
        rest = [t for t in rest if rng.random() >= tag_dropout]
    return kept + rest


def tag_frequency(frames: list["Frame"]) -> dict[str, dict[str, int]]:
    """kohya's ss_tag_frequency: {image folder name: {lowercased tag: number of captions with it}}."""
    # sd-scripts keys by os.path.basename(subset.image_dir), e.g. "6_tibbie"; A1111 shows these in its LoRA card.
    out: dict[str, dict[str, int]] = {}
    for frame in frames:
        counts = out.setdefault(frame.path.parent.name, {})
        for tag in split_tags(frame.caption):
            tag = tag.lower()
            counts[tag] = counts.get(tag, 0) + 1
    return out


def tags_in_every_caption(counts: dict[str, int], captions: int, trigger: str = "") -> list[str]:
    """Of {tag: how many captions hold it}, the tags all `captions` hold, the trigger word aside ([] under 2)."""
    # A LoRA files a feature that every frame tags under that tag, not under the trigger word, so a prompt
    # without it loses the feature in a new pose (measured: benchmarks/toy_world.md, session 15). Model cards
    # of unpruned character LoRAs list these tags; pruning them instead lets the trigger absorb them.
    if captions < 2:
        return []  # one caption: every tag would be "on every frame"
    trigger_keys = {_key(t) for t in split_tags(trigger)}
    return [tag for tag, n in counts.items() if n >= captions and _key(tag) not in trigger_keys]


def core_tags(tag_lists: Iterable[list[str]], trigger: str = "") -> list[str]:
    """Tags on every caption but the trigger word's, spelt and ordered as in the first caption."""
    lists = [list(tags) for tags in tag_lists]
    if not lists:
        return []
    counts: dict[str, int] = {}
    for tags in lists:
        for key in {_key(t) for t in tags}:
            counts[key] = counts.get(key, 0) + 1
    spelling: dict[str, str] = {}
    for tag in lists[0]:
        spelling.setdefault(_key(tag), tag)
    return [spelling[key] for key in tags_in_every_caption({k: counts[k] for k in spelling}, len(lists), trigger)]


def add_tag(tags: list[str], tag: str, first: bool = False) -> list[str]:
    """Add a tag at the end (or the front if `first`); an existing copy is kept, or moved to the front."""
    tag = tag.strip()
    if not tag:
        return list(tags)
    present = any(_key(t) == _key(tag) for t in tags)
    if not first:
        return list(tags) if present else list(tags) + [tag]
    return [tag] + [t for t in tags if _key(t) != _key(tag)]


def remove_tag(tags: list[str], tag: str) -> list[str]:
    """Remove every copy of a tag (case and spacing ignored)."""
    return [t for t in tags if _key(t) != _key(tag)]


def replace_tag(tags: list[str], old: str, new: str) -> list[str]:
    """Replace a tag in place; a resulting duplicate keeps only its first position; an empty `new` removes."""
    out: list[str] = []
    seen: set[str] = set()
    for t in tags:
        t = new.strip() if _key(t) == _key(old) else t
        if not t.strip():
            continue
        if _key(t) == _key(new) and _key(t) in seen:
            continue
        seen.add(_key(t))
        out.append(t)
    return out


def count_clip_tokens(caption: str, tokenizer) -> int:
    """How many CLIP tokens the caption uses, without start/end tokens (SD1.5 reads at most 75)."""
    # tokenize() rather than __call__: no "sequence longer than 77" warning for long captions.
    return len(tokenizer.tokenize(caption or ""))
