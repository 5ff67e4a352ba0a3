"""Outliers: frames far from the others of the set in a feature space, and the extractors that make the features.

A frame is measured by `checks.measure`, which asks an extractor for its feature vector; `outlier_flags`
then compares every trainable frame with its nearest neighbours. The default extractor is a few numpy
statistics (measured in benchmarks/review.md); the base model's VAE and a local CLIP vision model plug
in through the same interface.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from lora_studio.data.checks import Flag, ImageFacts, luminance, sharpness_and_anisotropy


class FeatureExtractor(Protocol):
    """Turns one RGB frame into a feature vector; frames far from the others are outliers."""

    name: str

    def __call__(self, image: Image.Image) -> np.ndarray: ...


class ImageStatsFeatures:
    """Colour, layout, edge and sharpness statistics: no download, a few milliseconds a frame.

    Each block weighs the same in the distance. Edge directions matter most for distorted frames
    (a warp or stretch bends every edge; a smear flattens them); colours and layout catch crops,
    flips and heavy effects. Measured on the toy world's demo dataset, see benchmarks/review.md.
    """

    name = "image statistics"
    block_names = ("colours", "colour mix", "layout", "edge directions", "where the detail is",
                   "sharpness and smear")
    blocks = (6, 27, 27, 8, 16, 2)
    thread_safe = True  # pure numpy: the review may call it from several threads

    def __call__(self, image: Image.Image) -> np.ndarray:
        image = image.convert("RGB")
        arr = np.asarray(image.resize((64, 64), Image.BOX), dtype=np.float64) / 255.0
        light, red_green, blue_yellow = _opponent(arr)
        colour = [c.mean() for c in (light, red_green, blue_yellow)] + [c.std() for c in (light, red_green, blue_yellow)]
        bins = np.minimum((arr * 3).astype(np.int64), 2)
        mix = np.bincount((bins[..., 0] * 9 + bins[..., 1] * 3 + bins[..., 2]).ravel(), minlength=27) / 4096.0
        layout = np.stack(_opponent(np.asarray(image.resize((3, 3), Image.BOX), dtype=np.float64) / 255.0), -1)
        gx = np.zeros_like(light)
        gy = np.zeros_like(light)
        gx[:, 1:-1] = light[:, 2:] - light[:, :-2]
        gy[1:-1, :] = light[2:, :] - light[:-2, :]
        magnitude = np.hypot(gx, gy)
        angle = (np.arctan2(gy, gx) % np.pi) / np.pi  # edge direction, sign-free
        directions = np.bincount(np.minimum((angle * 8).astype(np.int64), 7).ravel(), weights=magnitude.ravel(),
                                 minlength=8)
        directions = directions / (directions.sum() + 1e-9)
        detail = magnitude.reshape(4, 16, 4, 16).mean(axis=(1, 3)).ravel()
        sharpness, anisotropy = sharpness_and_anisotropy(luminance(image))
        return np.concatenate([colour, mix, layout.ravel(), directions, detail,
                               [math.log(sharpness + 1e-3), anisotropy]])


def _opponent(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lightness, red–green and blue–yellow: closer to how colour differences look than raw RGB."""
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    return (r + g + b) / 3, r - g, (r + g) / 2 - b


class VaeFeatures:
    """The base model's own VAE encoder: mean latent of a 128 px copy, pooled to a 4×4 grid per channel."""

    name = "VAE latents"
    blocks = None

    def __init__(self, vae, size: int = 128):
        self.vae = vae
        self.size = size

    def __call__(self, image: Image.Image) -> np.ndarray:
        import torch

        arr = np.asarray(image.convert("RGB").resize((self.size, self.size), Image.BICUBIC), dtype=np.float32)
        pixels = torch.from_numpy(arr / 127.5 - 1.0).permute(2, 0, 1)[None]
        param = next(self.vae.parameters())
        with torch.no_grad():
            latent = self.vae.encode(pixels.to(param.device, param.dtype)).latent_dist.mean
            pooled = torch.nn.functional.adaptive_avg_pool2d(latent.float(), 4)
        return pooled.flatten().cpu().numpy()


class ClipImageFeatures:
    """Optional stronger extractor: a CLIP vision model the user downloaded once (a local folder)."""

    name = "CLIP image embedding"
    blocks = None

    def __init__(self, model_dir: str | Path):
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        self.processor = CLIPImageProcessor.from_pretrained(str(model_dir))
        self.model = CLIPVisionModelWithProjection.from_pretrained(str(model_dir)).eval()

    def __call__(self, image: Image.Image) -> np.ndarray:
        import torch

        inputs = self.processor(images=image.convert("RGB"), return_tensors="pt")
        with torch.no_grad():
            embed = self.model(**inputs).image_embeds[0]
        return (embed / embed.norm()).cpu().numpy()


# A frame is an outlier when even its nearest frames are about as far from it as two random frames of
# the set are from each other. Dividing by the median pairwise distance (not the median kNN distance)
# keeps the threshold the same for 30 frames or 100: kNN distances shrink as a set grows, pair distances do not.
OUTLIER_THRESHOLD = 0.85
OUTLIER_NEIGHBOURS = 3  # more than one, so two copies of the same bad frame do not vouch for each other
OUTLIER_MIN_FRAMES = 8


def _standardised(features: np.ndarray, blocks: tuple[int, ...] | None) -> tuple[np.ndarray, list[slice]]:
    """Each dimension to zero mean and unit spread over the set; each block then weighs the same."""
    x = np.asarray(features, dtype=np.float64)
    scale = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.maximum(scale, 1e-6 + 1e-3 * float(scale.mean()))
    sizes = blocks or (x.shape[1],)
    slices, start = [], 0
    for size in sizes:
        slices.append(slice(start, start + size))
        x[:, start:start + size] /= math.sqrt(size)  # so 27 colour-mix numbers do not drown 2 sharpness ones
        start += size
    return x, slices


def _nearest(features: np.ndarray, blocks: tuple[int, ...] | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores (mean kNN distance ÷ median pairwise distance) and each block's share of the kNN distance."""
    x, slices = _standardised(features, blocks)
    sq = (x * x).sum(axis=1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0))
    np.fill_diagonal(dist, np.inf)
    k = max(1, min(k, len(x) - 1))
    neighbours = np.argsort(dist, axis=1)[:, :k]
    knn = np.take_along_axis(dist, neighbours, axis=1).mean(axis=1)
    diffs = x[:, None, :] - x[neighbours]  # (n, k, dims)
    per_block = np.stack([(diffs[..., s] ** 2).sum(-1).mean(-1) for s in slices], axis=1)
    share = per_block / np.maximum(per_block.sum(axis=1, keepdims=True), 1e-12)
    typical = float(np.median(dist[np.isfinite(dist)]))
    return knn / max(typical, 1e-9), share


def outlier_scores(features: np.ndarray, blocks: tuple[int, ...] | None = None,
                   k: int = OUTLIER_NEIGHBOURS) -> np.ndarray:
    """Each frame's mean distance to its k nearest frames, divided by the median distance between frames.

    About 0.5 for an ordinary frame; near 1 when its closest frames are as different from it as two
    random frames are. Every dimension is standardised over the set; with blocks, each block then
    weighs the same whatever its size.
    """
    return _nearest(features, blocks, k)[0]


def outlier_flags(facts: dict[str, ImageFacts], blocks: tuple[int, ...] | None = None,
                  block_names: tuple[str, ...] | None = None,
                  threshold: float = OUTLIER_THRESHOLD) -> dict[str, list[Flag]]:
    """Frames whose look is far from their nearest neighbours in the set, with what differs most."""
    measured = [(fid, f.features) for fid, f in facts.items() if f.features is not None]
    if len(measured) < OUTLIER_MIN_FRAMES:
        return {}
    scores, share = _nearest(np.stack([feat for _, feat in measured]), blocks, OUTLIER_NEIGHBOURS)
    # Which block stands out most against how much it usually contributes.
    unusual = share / np.maximum(np.median(share, axis=0, keepdims=True), 1e-12)
    out = {}
    for row, ((fid, _), score) in enumerate(zip(measured, scores)):
        if score < threshold:
            continue
        why = ""
        if block_names and len(block_names) == share.shape[1]:
            why = f", mostly in its {block_names[int(unusual[row].argmax())]}"
        much = "about as much as" if score < 1.1 else "more than"
        out[fid] = [Flag("outlier", f"unusual for this set: even its closest frames differ from it {much} two "
                         f"random frames do (score {score:.2f}; most frames score about 0.5){why}; check for a "
                         "distorted action frame", round(float(score), 2))]
    return out
