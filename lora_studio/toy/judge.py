"""The toy judge: what CCIP and a WD14 tagger are to anime, for the toy world, with no download.

A small CNN trained by `python -m lora_studio.toy.train_judge` on the generator's own ground truth:
- **tags**: background, objects, `sheep`, fleece/face/bow colours, pose (multi-label, one sigmoid each);
- **identity**: a unit-length embedding trained to tell sheep looks apart across many looks, with
  Tibbie's look (and a few others, for measuring) held out, so "same character as these frames?"
  works for characters it never saw, as CCIP does.

    judge = load_judge()
    judge.tags(images)                          # [["meadow", "sheep", "grey fleece", ...], ...]
    judge.same_character(images, frames)        # [True, False, ...] against reference frames
    judge.similarity(images, frames)            # the cosine similarities behind that answer

It ships in assets/toy-judge/ (a safetensors file and a JSON of its vocabulary, threshold and
measured accuracy) and loads in well under a second on a CPU.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from lora_studio import paths
from lora_studio.toy.scenes import BACKGROUNDS, OBJECTS
from lora_studio.toy.sheep import BOW_COLOURS, FACE_COLOURS, FLEECE_COLOURS, POSES

WEIGHTS = "judge.safetensors"
CARD = "judge.json"
IMAGE_SIZE = 64
# Every tag the judge can give, in a fixed order (its output units).
VOCABULARY = (
    *BACKGROUNDS, *OBJECTS, "sheep",
    *(f"{c} fleece" for c in FLEECE_COLOURS), *(f"{c} face" for c in FACE_COLOURS),
    *(f"{c} bow" for c in BOW_COLOURS), *POSES,
)
EMBEDDING_DIM = 32


def judge_dir() -> Path:
    """The shipped judge's folder."""
    return paths.assets_dir() / "toy-judge"


class JudgeNet(nn.Module):
    """Four strided conv stages (64 → 4 px), pooled; a tag head and an identity head on top."""

    def __init__(self, n_tags: int = len(VOCABULARY), n_identities: int = 1, width: int = 32):
        super().__init__()
        chans = (width, width * 2, width * 3, width * 4)
        layers, c_in = [], 3
        for c_out in chans:
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(8, c_out),
                       nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(8, c_out), nn.SiLU()]
            c_in = c_out
        self.trunk = nn.Sequential(*layers)
        # Mean and max pooling: a small bow is a local peak that averaging over the image would wash out.
        self.tag_head = nn.Linear(2 * c_in, n_tags)
        self.identity_head = nn.Sequential(nn.Linear(2 * c_in, 128), nn.SiLU(), nn.Linear(128, EMBEDDING_DIM))
        # Cosine classifier over the training looks; only used while training the embedding.
        self.identity_classes = nn.Parameter(torch.randn(n_identities, EMBEDDING_DIM) * 0.1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3, 64, 64) in [-1, 1] → pooled features."""
        h = self.trunk(x)
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tag logits and unit-length identity embeddings."""
        f = self.features(x)
        return self.tag_head(f), nn.functional.normalize(self.identity_head(f), dim=1)


def to_batch(images) -> torch.Tensor:
    """PIL images (any size) → a float batch in [-1, 1] at the judge's 64 px."""
    import numpy as np
    from PIL import Image

    arrays = []
    for image in images:
        image = image.convert("RGB")
        if image.size != (IMAGE_SIZE, IMAGE_SIZE):
            image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BOX if image.width > IMAGE_SIZE else Image.BICUBIC)
        arrays.append(np.asarray(image, dtype=np.uint8))
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


class ToyJudge:
    """A loaded judge: tags, identity embeddings and same-character answers for PIL images."""

    def __init__(self, net: JudgeNet, card: dict):
        self.net = net.eval()
        self.card = card
        self.vocabulary: tuple[str, ...] = tuple(card["vocabulary"])
        self.tag_thresholds: dict[str, float] = card.get("tag_thresholds", {})
        self.identity_threshold: float = card["identity_threshold"]

    @torch.no_grad()
    def tag_probabilities(self, images) -> list[dict[str, float]]:
        """Per image, every tag's probability (0–1)."""
        if not images:
            return []
        logits, _ = self.net(to_batch(images))
        probs = torch.sigmoid(logits).tolist()
        return [dict(zip(self.vocabulary, row)) for row in probs]

    def tags(self, images) -> list[list[str]]:
        """Per image, the tags whose probability passes their threshold, in vocabulary order."""
        return [[t for t, p in probs.items() if p >= self.tag_thresholds.get(t, 0.5)]
                for probs in self.tag_probabilities(images)]

    @torch.no_grad()
    def identity(self, images) -> torch.Tensor:
        """Unit-length identity embeddings (n, EMBEDDING_DIM); near 1 cosine = same look."""
        if not images:
            return torch.zeros(0, EMBEDDING_DIM)
        return self.net(to_batch(images))[1]

    def reference(self, frames) -> torch.Tensor:
        """One unit vector for a character from its frames (their mean embedding)."""
        if not frames:
            raise ValueError("no reference frames")
        return nn.functional.normalize(self.identity(frames).mean(dim=0), dim=0)

    def similarity(self, images, reference_frames=None, reference: torch.Tensor | None = None) -> list[float]:
        """Cosine similarity of each image to the character of the reference frames (or a cached reference)."""
        ref = reference if reference is not None else self.reference(reference_frames)
        return (self.identity(images) @ ref).tolist()

    def same_character(self, images, reference_frames=None, reference: torch.Tensor | None = None) -> list[bool]:
        """Per image: is this the character of the reference frames? (similarity ≥ the judge's threshold)."""
        return [s >= self.identity_threshold for s in self.similarity(images, reference_frames, reference)]


def save_judge(net: JudgeNet, card: dict, folder: Path) -> Path:
    """Weights in fp16 safetensors (half the size) and the card as JSON, written atomically."""
    import os

    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in net.state_dict().items()}
    tmp = folder / (WEIGHTS + ".tmp")
    save_file(state, tmp, metadata={"format": "pt"})
    os.replace(tmp, folder / WEIGHTS)
    tmp = folder / (CARD + ".tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, folder / CARD)
    return folder


def load_judge_from(folder: Path) -> ToyJudge:
    """A judge from a folder written by save_judge."""
    from safetensors.torch import load_file

    folder = Path(folder)
    card = json.loads((folder / CARD).read_text())
    state = {k: v.float() for k, v in load_file(folder / WEIGHTS).items()}
    net = JudgeNet(len(card["vocabulary"]), state["identity_classes"].shape[0], card.get("width", 32))
    net.load_state_dict(state)
    return ToyJudge(net, card)


@lru_cache(maxsize=1)
def load_judge() -> ToyJudge:
    """The shipped judge (loaded once per process)."""
    return load_judge_from(judge_dir())
