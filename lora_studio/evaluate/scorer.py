"""One scorer interface: three scores per image, each 0–1, and what they mean.

- **fidelity**: is this the character of the kept training frames? Compared with *reference features*
  that the scorer computes once from the frames (cached per dataset, evaluate/reference.py).
- **adherence**: does the image show what the prompt asks besides the character: the prompt's tags
  minus the character's own tags (`tree`, `sitting on tree`, `beach`, …), as the scorer's tagger sees them.
- **quality**: not broken or deformed (a gate: cells below `thresholds.quality` are never recommended).

Each backend states how its numbers are made and where its thresholds come from:
`toy` (evaluate/toy.py: the toy judge, no download) and `anime` (evaluate/anime.py: CCIP, a WD14
tagger and the AI-corrupt classifier, deepghs' ONNX models, downloaded once).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class Scores:
    """One image's three scores, each in 0–1; `unjudged` lists asked-for tags the scorer cannot see."""

    fidelity: float
    adherence: float
    quality: float
    unjudged: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """As stored in scores.json and the cache."""
        d = asdict(self)
        d["unjudged"] = list(self.unjudged)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Scores":
        """The inverse of to_dict."""
        return cls(float(d["fidelity"]), float(d["adherence"]), float(d["quality"]), tuple(d.get("unjudged", ())))


@dataclass(frozen=True)
class Thresholds:
    """Where a score passes: the character is recognised, the prompt is followed, the image is not broken."""

    fidelity: float = 0.5
    adherence: float = 0.5
    quality: float = 0.5


@dataclass(frozen=True)
class ScoreRequest:
    """What one image is judged against: its prompt's tags besides the character's own."""

    asked_tags: tuple[str, ...] = field(default_factory=tuple)


class Scorer(Protocol):
    """A backend: reference features from the kept frames, then three scores per image."""

    name: str        # "toy", "anime": stored in scores.json
    version: str     # changes when the numbers would change; cached scores of another version are redone
    thresholds: Thresholds

    def reference(self, frames: Sequence) -> np.ndarray:
        """Features of the character's kept frames (PIL images), one row per frame (cacheable)."""
        ...

    def score(self, images: Sequence, requests: Sequence[ScoreRequest], reference: np.ndarray) -> list[Scores]:
        """Scores for PIL images, each with what its prompt asks, against the reference features."""
        ...


class Tagger(Protocol):
    """Tags with probabilities for images: the toy judge, a WD14 tagger. Tags use spaces, not underscores."""

    name: str

    def tag_probabilities(self, images: Sequence) -> list[dict[str, float]]:
        """Per image, every tag's probability (0–1)."""
        ...


def f_beta(fidelity: float, adherence: float, beta: float = 3.0) -> float:
    """cyberharem's ranking: F-β with fidelity weighed β times as much as adherence (its `fidelity_alpha`, 3).

    As in deepghs/cyberharem eval.py: (β² + 1)·f·a / (β²·a + f). cyberharem first rescales both scores
    across the steps it compares; we keep them absolute, so a grid's numbers mean the same on every grid.
    """
    b2 = beta * beta
    denominator = b2 * adherence + fidelity
    return 0.0 if denominator <= 0 else (1 + b2) * fidelity * adherence / denominator
