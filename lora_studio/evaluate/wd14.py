"""A WD14 tagger (SmilingWolf's ONNX taggers): every tag's probability per image, with its category.

Model: `SmilingWolf/wd-swinv2-tagger-v3` (`model.onnx` + `selected_tags.csv`), the default of deepghs'
imgutils (imgutils/tagging/wd14.py, `SwinV2_v3`); any SmilingWolf WD14 repo with those two files works
(e.g. `SmilingWolf/wd-v1-4-moat-tagger-v2`). Pre-processing as imgutils and SmilingWolf's demo space do it:
transparency onto white, padded to a white square, resized (bicubic) to the model's input size (448),
float 0–255, RGB → BGR, NHWC. The CSV's `category` is 9 rating, 0 general, 4 character; the thresholds
the tagging flow applies are SmilingWolf's defaults, general 0.35 and character 0.85.
"""

from __future__ import annotations

import csv
import os
from typing import Sequence

import numpy as np

from lora_studio.evaluate.onnx_models import ModelFile, batch_limit, fetch_files, input_size, open_session

DEFAULT_TAGGER_REPO = "SmilingWolf/wd-swinv2-tagger-v3"
MODEL_FILENAME = "model.onnx"
LABEL_FILENAME = "selected_tags.csv"
CATEGORIES = {"9": "rating", "0": "general", "4": "character"}
GENERAL_THRESHOLD = 0.35
CHARACTER_THRESHOLD = 0.85
# Tags that are emoticons keep their underscore (SmilingWolf's wd-tagger space keeps this same list).
KAOMOJIS = {"0_0", "(o)_(o)", "+_+", "+_-", "._.", "<o>_<o>", "<|>_<|>", "=_=", ">_<", "3_3", "6_9", ">_o",
            "@_@", "^_^", "o_o", "u_u", "x_x", "|_|", "||_||"}


def tag_name(name: str) -> str:
    """A WD14 tag as users write it: underscores become spaces, emoticons stay as they are."""
    return name if name in KAOMOJIS else name.replace("_", " ")


def read_labels(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """selected_tags.csv → (tag names with spaces, their categories) in the model's output order."""
    names, categories = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            names.append(tag_name(row["name"]))
            categories.append(CATEGORIES.get(str(row["category"]).strip(), "general"))
    return names, categories


def wd14_input(image, size: int) -> np.ndarray:
    """One PIL image as the tagger's input row: white-padded square, size×size, BGR, float 0–255 (HWC)."""
    from PIL import Image

    image = image.convert("RGBA")
    # Transparent parts count as white, as imgutils' load_image(force_background='white') does.
    flat = Image.new("RGBA", image.size, (255, 255, 255, 255))
    flat.alpha_composite(image)
    image = flat.convert("RGB")
    side = max(image.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    if side != size:
        square = square.resize((size, size), Image.BICUBIC)
    return np.asarray(square, dtype=np.float32)[:, :, ::-1]


class WD14Tagger:
    """SmilingWolf's WD14 tagger: `tag_probabilities(images)`, and each tag's category for the thresholds."""

    general_threshold = GENERAL_THRESHOLD
    character_threshold = CHARACTER_THRESHOLD

    def __init__(self, repo_id: str = DEFAULT_TAGGER_REPO, model_dir: str | os.PathLike | None = None,
                 device: str = "cpu"):
        files = fetch_files([ModelFile(repo_id, MODEL_FILENAME), ModelFile(repo_id, LABEL_FILENAME)], model_dir)
        self.repo_id = repo_id
        self.name = f"wd14:{repo_id}"
        self.names, categories = read_labels(files[ModelFile(repo_id, LABEL_FILENAME)])
        self.session = open_session(files[ModelFile(repo_id, MODEL_FILENAME)], device)
        self.size = input_size(self.session, 448)
        self.tag_categories = dict(zip(self.names, categories))
        # Per tag, the threshold the tagging flow applies when it has no general threshold of its own.
        self.tag_thresholds = {t: (self.character_threshold if c == "character" else self.general_threshold)
                               for t, c in self.tag_categories.items()}
        self._batch = batch_limit(self.session, 16)

    def probabilities(self, images: Sequence) -> np.ndarray:
        """The raw output: one row of tag probabilities per image, in `self.names` order."""
        images = list(images)
        if not images:
            return np.zeros((0, len(self.names)), dtype=np.float32)
        inp, out = self.session.get_inputs()[0].name, self.session.get_outputs()[0].name
        rows = []
        for start in range(0, len(images), self._batch):
            data = np.stack([wd14_input(im, self.size) for im in images[start:start + self._batch]])
            rows.append(self.session.run([out], {inp: data})[0])
        probs = np.concatenate(rows)
        if probs.shape[1] != len(self.names):
            raise ValueError(f"{self.repo_id}: the model gives {probs.shape[1]} tags, selected_tags.csv names "
                             f"{len(self.names)}")
        return probs

    def tag_probabilities(self, images: Sequence) -> list[dict[str, float]]:
        """Per image, every tag's probability (0–1); tags use spaces, not underscores."""
        return [dict(zip(self.names, row.astype(float).tolist())) for row in self.probabilities(images)]
