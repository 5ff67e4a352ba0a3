"""The `toy` scorer: the toy judge (toy/judge.py) scores renders of the toy model, with no download.

- **fidelity** = cosine similarity of the image's identity embedding to the mean embedding of the kept
  frames, clipped to 0–1. Recognised from the judge's calibrated identity threshold (judge.json; 0.706 as shipped: the point
  that tells the character from looks that differ from hers in one feature only, such as a red bow).
- **adherence** = the mean probability the judge gives the tags the prompt asks for besides the
  character's own (e.g. `sitting on tree`, `beach`); tags outside its 28-tag vocabulary are `unjudged`.
  With nothing judgeable asked it is 1 (nothing was asked that the image could miss).
- **quality** = the toy quality model's probability that the image is a clean toy-world picture, not a
  warped, stretched, cropped, smeared, upside-down or fried one (toy/quality.py, trained on the
  generator's own broken frames as deepghs' AI-corrupt classifier is on broken renders). Below 0.5 a
  cell is never recommended.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lora_studio.evaluate.scorer import Scores, ScoreRequest, Thresholds


def _digest(card: dict) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(card, sort_keys=True, default=str).encode()).hexdigest()[:10]


class ToyScorer:
    """Scores for toy-world images from the shipped toy judge."""

    name = "toy"

    def __init__(self, judge=None):
        from lora_studio.toy.judge import load_judge

        from lora_studio.toy.quality import load_quality

        self.judge = judge or load_judge()
        self.quality_model = load_quality()
        # The judge's card holds its measured accuracy: a retrained judge is another scorer version.
        self.version = f"toy-judge/{self.judge.card.get('settings', {}).get('steps', 0)}/" \
                       f"{self.judge.identity_threshold}/quality-{_digest(self.quality_model.card)}"
        self.thresholds = Thresholds(fidelity=self.judge.identity_threshold, adherence=0.5, quality=0.5)

    def reference(self, frames: Sequence) -> np.ndarray:
        """The identity embedding of every kept frame (rows)."""
        return self.judge.identity(list(frames)).numpy()

    def score(self, images: Sequence, requests: Sequence[ScoreRequest], reference: np.ndarray) -> list[Scores]:
        """Fidelity, adherence and quality of each image (see the module docstring)."""
        import torch

        images = list(images)
        if not images:
            return []
        ref = torch.nn.functional.normalize(torch.from_numpy(np.asarray(reference)).float().mean(dim=0), dim=0)
        similarity = self.judge.similarity(images, reference=ref)
        probabilities = self.judge.tag_probabilities(images)
        qualities = self.quality_model.quality(images)
        out = []
        for sim, probs, quality, request in zip(similarity, probabilities, qualities, requests):
            judged = [t for t in request.asked_tags if t in probs]
            adherence = float(np.mean([probs[t] for t in judged])) if judged else 1.0
            out.append(Scores(fidelity=float(min(1.0, max(0.0, sim))), adherence=adherence, quality=float(quality),
                              unjudged=tuple(t for t in request.asked_tags if t not in probs)))
        return out


def load_toy_scorer(**options) -> ToyScorer:
    """The toy scorer on the shipped judge."""
    return ToyScorer(**options)
