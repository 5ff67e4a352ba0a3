"""Reading an A1111 `parameters` text back into an XY plot: the XY tab's "Paste parameters" and `xy --infotext`.

The reader follows A1111's own (modules/infotext_utils.parse_generation_parameters): the prompt lines,
then 'Negative prompt: …' and its continuation lines, then one last line of 'Key: value' pairs
(a quoted value is a JSON string). Its X/Y/Z fields (`Script: X/Y/Z plot`, `X Type: Prompt S/R`,
`X Values: "01,02,…"`) become the plot's axes unchanged, so the planner applies X, then Y, to each
cell's prompt as A1111 does, and the grid's cells are the images A1111 would render. Whatever the
plot cannot use is listed (`ignored`), never dropped without a word. Writing the text is infotext.py.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from lora_studio.config import XYPlotConfig
from lora_studio.errors import UserError
from lora_studio.generate.xy_plan import AXIS_KINDS, run_loras

# A1111's re_param_code: a key of 2+ word characters (blanks, '-' and '/' inside), then a JSON-quoted
# value or one up to the next comma.
_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
# write-ups and model sites often label the first line "Prompt: …"; A1111 itself never writes it
_PROMPT_LABEL = re.compile(r"^\s*prompt:\s*", re.IGNORECASE)

# A1111's X/Y/Z axis type label → our axis kind (the planner's own labels: 'Epoch', 'LoRA weight' … are
# what our grids write, so a grid of ours pastes back too); 'Run' names runs, not folders: refused below.
AXIS_TYPES = {label.lower(): kind for kind, (label, _) in AXIS_KINDS.items() if kind != "run"}
# the fields that become a setting of the plot; every other field is listed as not used
_USED = {"Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Clip skip", "Script"}


@dataclass
class PastedPlot:
    """An XYPlotConfig filled from a pasted text, and the fields it could not use."""

    config: XYPlotConfig
    ignored: list[str] = field(default_factory=list)  # 'Model (cuteyukimix…)', 'VAE hash', …
    has_axes: bool = False  # the text is an X/Y/Z plot's: x, y and z come from it (else they are the defaults)

    def warning(self) -> str:
        """The one line that tells the user what the pasted text asked for and the plot leaves out."""
        if not self.ignored:
            return ""
        return "Not used from the pasted text: " + "; ".join(self.ignored)


def parse_parameters(text: str) -> dict[str, str]:
    """{'Prompt': …, 'Negative prompt': …, key: value …} as A1111 reads its own `parameters` text."""
    lines = text.replace("\r\n", "\n").strip().split("\n")
    if lines and lines[0]:
        lines[0] = _PROMPT_LABEL.sub("", lines[0], count=1)
    *lines, last = lines
    if len(_PAIR.findall(last)) < 3:  # A1111's own test: no settings line at all
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    fields = {"Prompt": "\n".join(prompt).strip(), "Negative prompt": "\n".join(negative).strip()}
    for key, value in _PAIR.findall(last):
        value = value.strip()
        if len(value) > 1 and value[0] == value[-1] == '"':
            try:
                value = json.loads(value)
            except ValueError:  # A1111 keeps a value it cannot unquote as it is
                pass
        fields[key.strip()] = value
    return fields


def a1111_sampler(sampler: str, schedule: str | None) -> str:
    """('DPM++ 2M', 'Karras') → 'DPM++ 2M Karras', the one name the studio uses; 'Automatic' adds nothing."""
    sampler = " ".join(sampler.split())
    if not schedule or schedule.strip().lower() == "automatic" or sampler.lower().endswith(schedule.strip().lower()):
        return sampler
    return f"{sampler} {schedule.strip()}"


def _number(fields: dict, key: str, cast):
    try:
        return cast(float(fields[key])) if cast is int else cast(fields[key])
    except ValueError:
        raise UserError(f"the pasted {key} {fields[key]!r} is not a number",
                        "paste the text exactly as A1111's PNG Info shows it") from None


def _axis(fields: dict, letter: str, schedule: str | None) -> str:
    """One X/Y/Z axis as the CLI's spec ('sr=01,02,…'), or '' for none."""
    kind_label = fields.get(f"{letter} Type", "Nothing").strip()
    if kind_label.lower() in ("", "nothing"):
        return ""
    kind = AXIS_TYPES.get(kind_label.lower())
    if kind is None:
        if kind_label.lower() == "run":
            raise UserError(f"the pasted {letter} axis compares runs by name ({fields.get(f'{letter} Values', '')})",
                            "pick the runs to compare in 'Compare with runs', or give --z run=DIR1,DIR2")
        raise UserError(f"the pasted {letter} Type {kind_label!r} is not an axis LoRA Studio can plot",
                        "axes: " + ", ".join(label for k, (label, _) in AXIS_KINDS.items() if k != "run"))
    # A1111 writes the seeds a '-1' turned into as 'Fixed X Values'; the grid shows those
    values = fields.get(f"Fixed {letter} Values") if kind == "seed" else None
    values = values or fields.get(f"{letter} Values", "")
    if kind == "sampler" and schedule:
        # A1111 1.9's sampler axis keeps the grid's schedule type for every sampler on it
        names = [v.strip() for v in next(csv.reader([values], skipinitialspace=True)) if v.strip()]
        values = ",".join(a1111_sampler(n, schedule) for n in names)
    return f"{kind}={values}"


def plot_from_infotext(text: str, defaults: dict | None = None, **given) -> PastedPlot:
    """The XY plot a pasted A1111 `parameters` text describes; `given` fields (base, run, …) are the user's.

    A field neither names comes from `defaults` (the CLI's flag defaults), else XYPlotConfig's.
    """
    fields = parse_parameters(text)
    if not fields["Prompt"]:
        raise UserError("the pasted text has no prompt", "paste the whole text of A1111's PNG Info")
    values: dict = {"prompt": fields["Prompt"], "negative": fields["Negative prompt"]}
    if "Steps" in fields:
        values["steps"] = _number(fields, "Steps", int)
    if "CFG scale" in fields:
        values["cfg"] = _number(fields, "CFG scale", float)
    if "Seed" in fields:
        values["seed"] = _number(fields, "Seed", int)
    if "Size" in fields:
        values["size"] = fields["Size"]
    # A1111 writes 'Clip skip' only above 1, so a text without it was made at 1
    values["clip_skip"] = _number(fields, "Clip skip", int) if "Clip skip" in fields else 1
    schedule = fields.get("Schedule type")
    if "Sampler" in fields:
        values["sampler"] = a1111_sampler(fields["Sampler"], schedule)
    axis_keys = set()
    if fields.get("Script") == "X/Y/Z plot":
        for letter in "XYZ":
            values[letter.lower()] = _axis(fields, letter, schedule)
            axis_keys |= {f"{letter} Type", f"{letter} Values", f"Fixed {letter} Values"}
        if not values["x"]:  # A1111 lets X be Nothing; our grid needs one: the next axis moves up
            values["x"], values["y"], values["z"] = values["y"], values["z"], ""
    ignored = []
    for key, value in fields.items():
        if key in ("Prompt", "Negative prompt") or key in axis_keys or (key in _USED and key != "Script"):
            continue
        if key == "Script" and value == "X/Y/Z plot":
            continue
        short = value if len(value) <= 40 else value[:37] + "…"
        ignored.append(f"{key} ({short})" if key in ("Model", "VAE", "Script") else key)
    config = XYPlotConfig(**{**(defaults or {}), **values, **given})
    try:
        config.validate()
    except UserError as exc:
        raise UserError(f"the pasted text does not fit: {exc.message}", exc.hint) from None
    return PastedPlot(config, ignored, bool(axis_keys))


def read_infotext_file(path: Path | str) -> str:
    """The `parameters` text of a .txt file, or of a PNG that A1111 (or this studio) wrote."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"infotext file not found: {path}", "save the PNG Info text (or the PNG itself) to a file")
    if path.suffix.lower() == ".png":
        from PIL import Image

        with Image.open(path) as image:
            text = image.info.get("parameters")
        if not text:
            raise UserError(f"{path.name} holds no A1111 parameters", "give the PNG A1111 saved, or its PNG Info text")
        return text
    return path.read_text(encoding="utf-8-sig")


def run_mismatch(prompt: str, run_folder: Path | str) -> str:
    """'' when the prompt's LoRA tags name this run's files, else what is wrong, in words."""
    from lora_studio.generate.prompt import split_lora_tags

    run = run_loras(run_folder)
    tags = split_lora_tags(prompt)[1]
    if not tags or any(run.owns(t.name) or run.find(t.name) for t in tags):
        return ""
    stems = [run.epochs[e].stem for e in sorted(run.epochs)]
    have = f"`{stems[0]}` … `{stems[-1]}`" if stems else "no epoch files yet"
    names = ", ".join(f"`{t.name}`" for t in tags)
    return (f"The prompt's LoRA {names} is not a file of the run `{Path(run_folder).name}` (its files: {have}); "
            f"pick the run that made it, or write <lora:{stems[0] if stems else run.name + '-000001'}:…> in the prompt.")
