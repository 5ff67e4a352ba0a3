"""The `anime` scorer: deepghs' and SmilingWolf's ONNX models, downloaded once (evaluate/onnx_models.py).

- **fidelity** = CCIP (`deepghs/ccip_onnx`, `ccip-caformer-24-randaug-pruned/`: `model_feat.onnx` gives a
  768-d feature per image, `model_metrics.onnx` a learned difference for every pair of features,
  `metrics.json` the model's own "same character" threshold, ~0.178): the share of the kept frames whose
  difference to the image is below that threshold, as deepghs' sdeval CCIPMetrics (and so cyberharem)
  compute it. Recognised from 0.5: at least half of the character's own frames say it is her.
- **adherence** = the mean probability a WD14 tagger (evaluate/wd14.py) gives the tags the prompt asks for
  besides the character's own; tags it does not know are `unjudged`; nothing judgeable asked → 1. Passes from
  0.35, the probability from which the tagger itself would write the tag (SmilingWolf's general threshold).
- **quality** = 1 − p(corrupted) from deepghs' AI-corrupt classifier (`deepghs/ai_image_corrupted`,
  `caformer_s36_v0_focal/`: `model.onnx` + `meta.json` with its labels), the one sdeval uses. Below 0.5 the
  classifier thinks the image more likely broken than not, and the cell is never recommended.

Pre-processing is copied from imgutils' source (imgutils/metrics/ccip.py; sdeval/corrupt and
imgutils/generic/classify.py for the classifier), named where used. The tests run all of this on tiny ONNX
models they build themselves: they prove loading, pre-processing, thresholds and wiring, not quality.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from lora_studio.errors import UserError
from lora_studio.evaluate.onnx_models import ModelFile, batch_limit, fetch_files, input_size, open_session
from lora_studio.evaluate.scorer import ScoreRequest, Scores, Thresholds
from lora_studio.evaluate.wd14 import DEFAULT_TAGGER_REPO, GENERAL_THRESHOLD, WD14Tagger

__all__ = ["AnimeScorer", "WD14Tagger", "load_anime_scorer", "model_files"]

CCIP_REPO = "deepghs/ccip_onnx"
CCIP_MODEL = "ccip-caformer-24-randaug-pruned"  # sdeval's and imgutils' default
CORRUPT_REPO = "deepghs/ai_image_corrupted"
CORRUPT_MODEL = "caformer_s36_v0_focal"  # sdeval's AICorruptMetrics default
# CLIP's mean and std: CCIP's caformer was trained on CLIP-normalised input (imgutils/metrics/ccip.py).
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def model_files(ccip_model: str = CCIP_MODEL, tagger_repo: str = DEFAULT_TAGGER_REPO,
                corrupt_model: str = CORRUPT_MODEL) -> list[ModelFile]:
    """Every file the anime scorer needs, as repo + file name (for downloads and the offline message)."""
    return [ModelFile(CCIP_REPO, f"{ccip_model}/model_feat.onnx"),
            ModelFile(CCIP_REPO, f"{ccip_model}/model_metrics.onnx"),
            ModelFile(CCIP_REPO, f"{ccip_model}/metrics.json"),
            ModelFile(tagger_repo, "model.onnx"),
            ModelFile(tagger_repo, "selected_tags.csv"),
            ModelFile(CORRUPT_REPO, f"{corrupt_model}/model.onnx"),
            ModelFile(CORRUPT_REPO, f"{corrupt_model}/meta.json")]


def _rgb(image):
    """RGB with transparency on white, as imgutils' load_image(force_background='white') gives."""
    from PIL import Image

    if image.mode == "RGB":
        return image
    image = image.convert("RGBA")
    flat = Image.new("RGBA", image.size, (255, 255, 255, 255))
    flat.alpha_composite(image)
    return flat.convert("RGB")


def ccip_input(image, size: int) -> np.ndarray:
    """One image as CCIP's input: size×size bilinear (no padding), RGB, 0–1, CLIP-normalised, CHW."""
    from PIL import Image

    data = np.asarray(_rgb(image).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    return ((data - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)


def corrupt_input(image, size: int) -> np.ndarray:
    """One image as the AI-corrupt classifier's input: size×size bilinear, RGB, (x/255 − 0.5)/0.5, CHW."""
    from PIL import Image

    data = np.asarray(_rgb(image).resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    return ((data - 0.5) / 0.5).transpose(2, 0, 1)


def _run(session, data: np.ndarray) -> np.ndarray:
    return session.run([session.get_outputs()[0].name], {session.get_inputs()[0].name: data.astype(np.float32)})[0]


def _key(tag: str) -> str:
    return " ".join(tag.replace("_", " ").split()).lower()


class AnimeScorer:
    """CCIP fidelity, WD14 adherence and AI-corrupt quality for anime-style images (see the module docstring)."""

    name = "anime"

    def __init__(self, model_dir: str | os.PathLike | None = None, device: str = "cpu",
                 ccip_model: str = CCIP_MODEL, tagger_repo: str = DEFAULT_TAGGER_REPO,
                 corrupt_model: str = CORRUPT_MODEL, batch_size: int = 8):
        # All seven files at once, so an offline user gets one message naming every missing file.
        files = model_files(ccip_model, tagger_repo, corrupt_model)
        paths = fetch_files(files, model_dir)
        feat, metric, metrics_json, _tagger, _tags, corrupt, corrupt_meta = (paths[f] for f in files)
        self.ccip_feat = open_session(feat, device)
        self.ccip_metric = open_session(metric, device)
        self.ccip_threshold = float(json.loads(metrics_json.read_text(encoding="utf-8"))["threshold"])
        self.tagger = WD14Tagger(tagger_repo, model_dir=model_dir, device=device)
        self.corrupt = open_session(corrupt, device)
        labels = json.loads(corrupt_meta.read_text(encoding="utf-8"))["labels"]
        self.corrupt_index = labels.index("corrupted")
        self.ccip_size = input_size(self.ccip_feat, 384)
        self.corrupt_size = input_size(self.corrupt, 384)
        self.batch_size = batch_size
        self._tag_keys = {_key(t): t for t in self.tagger.names}
        self.version = f"anime/{ccip_model}@{self.ccip_threshold:.4f}/{tagger_repo}/{corrupt_model}"
        self.thresholds = Thresholds(fidelity=0.5, adherence=GENERAL_THRESHOLD, quality=0.5)

    def _batched(self, session, rows: list[np.ndarray]) -> np.ndarray:
        size = batch_limit(session, self.batch_size)
        return np.concatenate([_run(session, np.stack(rows[i:i + size])) for i in range(0, len(rows), size)])

    def features(self, images: Sequence) -> np.ndarray:
        """CCIP features, one row per image."""
        return self._batched(self.ccip_feat, [ccip_input(im, self.ccip_size) for im in images])

    def reference(self, frames: Sequence) -> np.ndarray:
        """The CCIP feature of every kept frame (rows)."""
        return self.features(list(frames))

    def fidelity(self, features: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Per image, the share of reference frames CCIP calls the same character (difference < threshold)."""
        reference = np.asarray(reference, dtype=np.float32)
        if len(reference) == 0:
            raise UserError("no kept frames to compare the images with", "keep some frames in the dataset's review")
        # The metric graph compares every pair of the rows it is given (as imgutils' ccip_batch_differences).
        differences = _run(self.ccip_metric, np.concatenate([reference, features]))
        cross = differences[:len(reference), len(reference):]
        return (cross < self.ccip_threshold).mean(axis=0)

    def quality(self, images: Sequence) -> np.ndarray:
        """Per image, 1 − the classifier's probability that it is AI-corrupted."""
        probs = self._batched(self.corrupt, [corrupt_input(im, self.corrupt_size) for im in images])
        # imgutils reads this output as probabilities (softmax in the export); should a model give logits
        # instead (rows not summing to 1; not checked on the real file here, no downloads), take their softmax.
        if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
            e = np.exp(probs - probs.max(axis=1, keepdims=True))
            probs = e / e.sum(axis=1, keepdims=True)
        return 1.0 - np.clip(probs[:, self.corrupt_index], 0.0, 1.0)

    def score(self, images: Sequence, requests: Sequence[ScoreRequest], reference: np.ndarray) -> list[Scores]:
        """Fidelity, adherence and quality of each image (see the module docstring)."""
        images = list(images)
        if not images:
            return []
        fidelity = self.fidelity(self.features(images), reference)
        quality = self.quality(images)
        tags = self.tagger.tag_probabilities(images)
        out = []
        for fid, qual, probs, request in zip(fidelity, quality, tags, requests):
            known = [(t, self._tag_keys.get(_key(t))) for t in request.asked_tags]
            judged = [probs[name] for _t, name in known if name is not None]
            out.append(Scores(fidelity=float(fid), adherence=float(np.mean(judged)) if judged else 1.0,
                              quality=float(qual), unjudged=tuple(t for t, name in known if name is None)))
        return out


def load_anime_scorer(**options) -> AnimeScorer:
    """The anime scorer; options: model_dir, device ('cpu' or 'cuda'), ccip_model, tagger_repo, corrupt_model."""
    return AnimeScorer(**options)
