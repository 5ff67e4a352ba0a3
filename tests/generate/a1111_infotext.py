"""A reader of A1111's `parameters` text, written from its documented format, to check what we write.

Format: the prompt (may span lines), optionally a line 'Negative prompt: …' (and its continuation
lines), then one last line of 'Key: value' pairs joined by ', '; a value holding ',', ':' or a
newline is a JSON string in double quotes.
"""

from __future__ import annotations

import json
import re

PAIR = re.compile(r'\s*([A-Za-z0-9][\w \-/]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def parse_infotext(text: str) -> dict:
    """{'Prompt': …, 'Negative prompt': …, key: value …}; quoted values come back unquoted."""
    *lines, last = text.strip().split("\n")
    if len(PAIR.findall(last)) < 3:  # no parameters line at all
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    fields = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in PAIR.findall(last):
        value = value.strip()
        if value.startswith('"') and value.endswith('"') and len(value) > 1:
            value = json.loads(value)
        fields[key.strip()] = value
    return fields


def parse_lora_hashes(value: str) -> dict:
    """'a: 123, b: 456' → {'a': '123', 'b': '456'}."""
    return dict(part.split(": ", 1) for part in value.split(", ") if part)
