"""What a prompt asks of an image besides the character: its tags minus the character's own.

The character's own tags are the trigger word and the tags nearly every kept frame carries (for the
demo: `tibbie`, `sheep`; captioned with her bow, `pink bow` too); they are fidelity's business. What is left (`sitting on tree`,
`beach`, `night`) is what adherence checks, as cyberharem checks a prompt's tags with a tagger.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

# A tag on at least this share of the kept frames belongs to the character, not to a scene.
CHARACTER_SHARE = 0.8
# A1111 quality boilerplate no tagger can see in an image.
BOILERPLATE = {"masterpiece", "best quality", "high quality", "highres", "absurdres", "1girl", "1boy", "solo"}


def prompt_tags(prompt: str) -> list[str]:
    """A1111 prompt → its tags: <lora:…> tags and (attention:1.2) weights removed, lower case, in order."""
    from lora_studio.data.captions import split_tags
    from lora_studio.generate.prompt import parse_attention, split_lora_tags

    text = split_lora_tags(prompt)[0]
    plain = "".join(part for part, _weight in parse_attention(text))
    seen, out = set(), []
    for tag in split_tags(plain.replace("BREAK", ",")):
        tag = " ".join(tag.replace("_", " ").split()).lower()
        if tag and tag not in seen:
            seen.add(tag)
            out.append(tag)
    return out


def character_tags(tag_lists: Iterable[list[str]], trigger_word: str = "") -> set[str]:
    """The trigger word plus every tag on at least CHARACTER_SHARE of the frames."""
    lists = [{t.strip().lower() for t in tags if t.strip()} for tags in tag_lists]
    counts = Counter(t for tags in lists for t in tags)
    own = {t for t, n in counts.items() if lists and n >= CHARACTER_SHARE * len(lists)}
    if trigger_word.strip():
        own.add(trigger_word.strip().lower())
    return own


def asked_tags(prompt: str, character: set[str]) -> tuple[str, ...]:
    """The prompt's tags that adherence judges: not the character's, not quality boilerplate."""
    return tuple(t for t in prompt_tags(prompt) if t not in character and t not in BOILERPLATE)
