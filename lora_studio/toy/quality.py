"""The toy quality model: the probability that an image is a clean toy-world picture, not a broken one.

The toy world's counterpart of deepghs' AI-corrupt classifier, which the `anime` scorer uses for the
same job. A small classifier (logistic regression, or one small hidden layer) over the review's numpy
image statistics (data/outliers.py `ImageStatsFeatures`) plus a few statistics of flat, clipped and
posterised colour; it is trained on the generator's own ground truth by toy/train_quality.py
(clean scenes vs distorted and "fried" ones) and ships as plain JSON in assets/toy-judge/quality.json:
the standardisation, the weights and the card's measured numbers. Importing this module loads nothing.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

QUALITY_FILE = "quality.json"
EXTRA_NAMES = ("clipped white", "clipped black", "flat share", "strong saturation", "colour levels")


def quality_path() -> Path:
    """Where the shipped quality model lives (beside the toy judge)."""
    from lora_studio import paths  # not toy.judge's judge_dir: that imports torch

    return paths.assets_dir() / "toy-judge" / QUALITY_FILE


def extra_statistics(image):
    """Clipped-white and clipped-black shares, the flat share, the share of strong colour and the colour
    levels used: a fried LoRA paints flat blown-out blobs and posterised, oversaturated colour."""
    import numpy as np
    from PIL import Image

    arr = np.asarray(image.convert("RGB").resize((64, 64), Image.BOX), dtype=np.float64) / 255.0
    white = (arr.min(axis=-1) > 0.97).mean()
    black = (arr.max(axis=-1) < 0.04).mean()
    # Flat: the pixel equals its right and lower neighbours; drawn scenes have gradients and antialiased edges.
    step = np.abs(arr[:-1, :-1] - arr[1:, :-1]).max(axis=-1) + np.abs(arr[:-1, :-1] - arr[:-1, 1:]).max(axis=-1)
    flat = (step < 1.5 / 255).mean()
    strong = ((arr.max(axis=-1) - arr.min(axis=-1)) > 0.8).mean()
    levels = np.mean([len(np.unique(np.rint(arr[..., c] * 63))) for c in range(3)]) / 64
    return np.array([white, black, flat, strong, levels])


def quality_features(image):
    """The model's input for one image: the review's image statistics, then EXTRA_NAMES."""
    import numpy as np

    from lora_studio.data.outliers import ImageStatsFeatures

    return np.concatenate([ImageStatsFeatures()(image), extra_statistics(image)])


class ToyQuality:
    """A loaded quality model: standardise, then dense layers (ReLU between), then a sigmoid."""

    def __init__(self, card: dict):
        import numpy as np

        self.card = card
        self.mean = np.asarray(card["mean"], dtype=np.float64)
        self.scale = np.asarray(card["scale"], dtype=np.float64)
        self.layers = [(np.asarray(layer["weights"], dtype=np.float64), np.asarray(layer["bias"], dtype=np.float64))
                       for layer in card["layers"]]

    def probabilities(self, features):
        """Probability of 'clean' for each row of a feature matrix."""
        import numpy as np

        h = (np.atleast_2d(features) - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return 1.0 / (1.0 + np.exp(-np.clip(h[:, 0], -50, 50)))

    def quality(self, images) -> list[float]:
        """Probability (0–1) that each PIL image is a clean toy-world image rather than a broken one."""
        import numpy as np

        images = list(images)
        if not images:
            return []
        return [float(p) for p in self.probabilities(np.stack([quality_features(im) for im in images]))]


def load_quality_from(path: str | Path) -> ToyQuality:
    """A quality model from its JSON file."""
    import json

    from lora_studio.errors import UserError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"the toy quality model {path} is missing",
                        "rebuild it with: python -m lora_studio.toy.train_quality")
    return ToyQuality(json.loads(path.read_text()))


@lru_cache(maxsize=1)
def load_quality() -> ToyQuality:
    """The shipped quality model (read once per process)."""
    return load_quality_from(quality_path())


def quality(images) -> list[float]:
    """Probability (0–1) that each PIL image is a clean toy-world image, by the shipped model."""
    return load_quality().quality(images)
