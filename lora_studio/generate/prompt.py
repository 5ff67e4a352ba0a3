"""A1111 prompt syntax: `<lora:name:w>` tags, `(word:1.2)` attention, 75-token chunks, Prompt S/R.

Written by hand to A1111's documented behaviour (wiki "Features": attention/emphasis, BREAK,
infinite prompt length; the X/Y/Z script's Prompt S/R). Checked first: diffusers has no A1111
weighting in the installed package (only the unshipped community `lpw_stable_diffusion`), and
`compel` uses a different syntax and is not a dependency. No torch here: the tensors are made in
pipeline.py from the chunks this module returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lora_studio.errors import UserError

# A1111's extra-network tag: <type:arg1:arg2...>; `type` is \w+, args run to the next '>'.
EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")
LORA_TYPES = ("lora", "lyco")

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
CHUNK_TOKENS = 75
# A1111 option "comma_padding_backtrack" (default 20): when a chunk fills up, move the words after
# the last comma (if it is at most this many tokens back) into the next chunk.
COMMA_BACKTRACK = 20
BREAK_WEIGHT = -1.0


@dataclass(frozen=True)
class LoraTag:
    """One `<lora:name:te[:unet]>` tag: which LoRA and how strongly (text encoder, UNet)."""

    name: str
    te_weight: float
    unet_weight: float

    @property
    def is_off(self) -> bool:
        """A tag at weight 0 changes nothing: the image is the base model's."""
        return self.te_weight == 0 and self.unet_weight == 0


def _parse_weight(text: str, tag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"LoRA weight {text!r} in {tag} is not a number",
                        "write it like <lora:name:0.8> (or <lora:name:te:unet>)") from None


def _lora_tag(args: list[str], raw: str) -> LoraTag:
    # A1111 accepts positional <lora:name:te:unet> and named te=/unet= arguments.
    name, positional, named = args[0].strip(), [], {}
    for arg in args[1:]:
        key, eq, value = arg.partition("=")
        if eq:
            named[key.strip()] = value.strip()
        else:
            positional.append(arg.strip())
    te = _parse_weight(named.get("te", positional[0] if positional else "1"), raw)
    unet_text = named.get("unet", positional[1] if len(positional) > 1 else None)
    unet = te if unet_text is None else _parse_weight(unet_text, raw)
    if not name:
        raise UserError(f"{raw} names no LoRA", "write it like <lora:name:0.8>")
    return LoraTag(name, te, unet)


def split_lora_tags(prompt: str) -> tuple[str, list[LoraTag]]:
    """The text CLIP sees (every `<…:…>` tag removed, as A1111 does) and the LoRA tags in order."""
    tags: list[LoraTag] = []

    def take(match: re.Match) -> str:
        kind = match.group(1).lower()
        if kind not in LORA_TYPES:
            raise UserError(f"{match.group(0)}: '{kind}' networks are not supported",
                            "only <lora:name:weight> tags are")
        tags.append(_lora_tag(match.group(2).split(":"), match.group(0)))
        return ""

    return EXTRA_NETWORK.sub(take, prompt), tags


def format_weight(value: float) -> str:
    """A weight as a person writes it: 1 not 1.0, 0.3 not 0.30000000000000004."""
    text = f"{round(float(value), 6):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def set_lora_tag(prompt: str, index: int, name: str | None = None, weight: float | None = None) -> str:
    """Rewrite the index-th lora tag's name and/or weight (both te and UNet), leaving the rest as typed."""
    matches = [m for m in EXTRA_NETWORK.finditer(prompt) if m.group(1).lower() in LORA_TYPES]
    match = matches[index]
    old = _lora_tag(match.group(2).split(":"), match.group(0))
    new_name = old.name if name is None else name
    if weight is not None:
        text = f"<{match.group(1)}:{new_name}:{format_weight(weight)}>"
    elif old.te_weight == old.unet_weight:
        text = f"<{match.group(1)}:{new_name}:{format_weight(old.te_weight)}>"
    else:
        text = f"<{match.group(1)}:{new_name}:{format_weight(old.te_weight)}:{format_weight(old.unet_weight)}>"
    return prompt[:match.start()] + text + prompt[match.end():]


# --- attention weights -------------------------------------------------------------------------

_ATTENTION_TOKEN = re.compile(
    r"\\[()\[\]\\]|"                       # an escaped bracket or backslash: literal
    r"\(|\[|"                            # open a group
    r":\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)|"  # ':1.2)' closes a round group with an explicit weight
    r"\)|\]|"                            # close a group
    r"[^\\()\[\]:]+|"                    # plain text
    r":|\\",                             # a stray colon, or a lone backslash (dropped, as A1111 does)
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*")


def parse_attention(text: str) -> list[tuple[str, float]]:
    """A1111 emphasis: '(a)' ×1.1, '[a]' ÷1.1, '(a:1.3)' ×1.3, '\\(' literal, 'BREAK' → ('BREAK', -1)."""
    pieces: list[list] = []  # [text, weight]
    open_round: list[int] = []
    open_square: list[int] = []

    def scale_from(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    for match in _ATTENTION_TOKEN.finditer(text):
        token, explicit = match.group(0), match.group(1)
        if token.startswith("\\"):
            pieces.append([token[1:], 1.0])
        elif token == "(":
            open_round.append(len(pieces))
        elif token == "[":
            open_square.append(len(pieces))
        elif explicit is not None and open_round:
            scale_from(open_round.pop(), float(explicit))
        elif token == ")" and open_round:
            scale_from(open_round.pop(), ROUND_MULTIPLIER)
        elif token == "]" and open_square:
            scale_from(open_square.pop(), SQUARE_MULTIPLIER)
        else:
            # unmatched closers and stray colons are just text, as in A1111
            for i, part in enumerate(_BREAK.split(token)):
                if i:
                    pieces.append(["BREAK", BREAK_WEIGHT])
                pieces.append([part, 1.0])
    # groups left open still count (A1111: "(unbalanced" is weighted 1.1)
    for start in open_round:
        scale_from(start, ROUND_MULTIPLIER)
    for start in open_square:
        scale_from(start, SQUARE_MULTIPLIER)

    merged: list[list] = []
    for piece in pieces:
        if merged and merged[-1][1] == piece[1]:
            merged[-1][0] += piece[0]
        else:
            merged.append(piece)
    return [(t, w) for t, w in merged] or [("", 1.0)]


_ESCAPED = re.compile(r"\\.")
_SCHEDULED = re.compile(r"\[[^\[\]]*[:|][^\[\]]*\]")


def refuse_scheduling(text: str) -> None:
    """A1111's prompt editing '[a:b:0.5]' and alternation '[a|b]' change the prompt per step: not supported."""
    match = _SCHEDULED.search(_ESCAPED.sub("", text))
    if match:
        raise UserError(f"{match.group(0)}: prompt editing and alternation are not supported",
                        "write one prompt per cell (a Prompt S/R axis can vary it), or escape brackets as \\[ \\]")


# --- 75-token chunks ---------------------------------------------------------------------------

@dataclass
class Chunk:
    """77 CLIP token ids (BOS, 75 tokens, EOS) and the attention weight of each."""

    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def _special_ids(tokenizer) -> tuple[int, int, int | None]:
    # convert_tokens_to_ids, not get_vocab(): building the 49k-entry vocab dict costs ~20 ms a call
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    return tokenizer.bos_token_id, tokenizer.eos_token_id, None if comma == tokenizer.unk_token_id else comma


def empty_chunk(tokenizer) -> Chunk:
    """The chunk of an empty prompt: what A1111 pads shorter prompts of a batch with."""
    bos, eos, _ = _special_ids(tokenizer)
    return Chunk([bos] + [eos] * (CHUNK_TOKENS + 1), [1.0] * (CHUNK_TOKENS + 2))


def prompt_chunks(tokenizer, text: str) -> list[Chunk]:
    """Split a prompt (lora tags already removed) into weighted 77-token chunks the way A1111 does.

    Prompts longer than 75 tokens become several chunks whose embeddings are concatenated; a chunk
    that fills up moves the words after a nearby comma to the next one; BREAK starts a new chunk.
    SD1.5 pads with the end token, as A1111 does for SD1 models.
    """
    refuse_scheduling(text)
    bos, eos, comma = _special_ids(tokenizer)
    parsed = parse_attention(text)
    token_lists = tokenizer([t for t, _ in parsed], truncation=False, add_special_tokens=False, verbose=False)["input_ids"]

    chunks: list[Chunk] = []
    current = Chunk()
    last_comma = -1

    def close_chunk() -> None:
        nonlocal current, last_comma
        pad = CHUNK_TOKENS - len(current.tokens)
        tokens = [bos] + current.tokens + [eos] * pad + [eos]
        weights = [1.0] + current.weights + [1.0] * pad + [1.0]
        chunks.append(Chunk(tokens, weights))
        current = Chunk()
        last_comma = -1

    for ids, (piece, weight) in zip(token_lists, parsed):
        if piece == "BREAK" and weight == BREAK_WEIGHT:
            close_chunk()
            continue
        for token in ids:
            if token == comma:
                last_comma = len(current.tokens)
            elif (len(current.tokens) == CHUNK_TOKENS and last_comma != -1
                  and len(current.tokens) - last_comma <= COMMA_BACKTRACK):
                cut = last_comma + 1
                moved = Chunk(current.tokens[cut:], current.weights[cut:])
                current.tokens, current.weights = current.tokens[:cut], current.weights[:cut]
                close_chunk()
                current = moved
            if len(current.tokens) == CHUNK_TOKENS:
                close_chunk()
            current.tokens.append(token)
            current.weights.append(weight)
    if current.tokens or not chunks:
        close_chunk()
    return chunks


# --- Prompt S/R --------------------------------------------------------------------------------

def prompt_sr(prompt: str, negative: str, search: str, replace: str) -> tuple[str, str]:
    """A1111 Prompt S/R: replace every occurrence of the axis' first value in prompt and negative."""
    if search not in prompt and search not in negative:
        raise UserError(f"Prompt S/R did not find {search!r} in the prompt or negative prompt",
                        "the first S/R value must be text that is in the prompt; the others replace it")
    return prompt.replace(search, replace), negative.replace(search, replace)
