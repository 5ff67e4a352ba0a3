"""Train the toy quality model on the generator's ground truth, measure it, ship it as assets/toy-judge/quality.json.

    python -m lora_studio.toy.train_quality                     # ~1 min on 1 CPU thread
    python -m lora_studio.toy.train_quality --out /tmp/q.json --clean-images 200   # a quick look

Clean: base scenes without sheep, generic sheep of every look in every pose, and Tibbie's frames,
half of them softened as generated images are (the toy judge's VAE pass and augmentations,
train_judge.generated_like). Broken: the same kinds of pictures, crisp or softened, then distorted
(toy/distort.py's five kinds) or fried (FRIED below). Train and test images come from disjoint seeds;
the card records accuracy and AUC on the test set per broken kind and on the shipped demo dataset.
Seeded: a rerun on the same machine writes the same numbers.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

# What a too-high learning rate does to a render, drawn simply:
#   "blown-out blobs": large flat white or black patches over the scene (saturated latents decode to them);
#   "posterised colour": saturation and contrast pushed hard, then few levels per channel;
#   "noise": strong per-pixel colour noise, fine or in small blocks (the sampler never denoised it).
FRIED = ("blown-out blobs", "posterised colour", "noise")


@dataclass
class QualitySettings:
    """Knobs of one quality-model run; the defaults made the shipped model."""

    seed: int = 0
    clean_images: int = 800
    broken_per_kind: int = 120
    test_clean: int = 400
    test_per_kind: int = 80
    soft_share: float = 0.5  # share of images seen through the VAE (~0.04 s each)
    hidden: int = 16  # 0: logistic regression
    steps: int = 1500
    lr: float = 0.01
    l2: float = 1e-3
    vae: str = "toy"


def fry(image: Image.Image, kind: str, rng: random.Random) -> Image.Image:
    """A 'fried LoRA' copy of an RGB image, one of FRIED."""
    if kind == "blown-out blobs":
        out = image.copy()
        draw = ImageDraw.Draw(out)
        w, h = image.size
        colour = (255, 255, 255) if rng.random() < 0.6 else (0, 0, 0)
        for _ in range(rng.randint(1, 3)):
            rx, ry = rng.uniform(0.2, 0.4) * w, rng.uniform(0.2, 0.4) * h
            cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=colour)
        return out
    if kind == "posterised colour":
        out = ImageEnhance.Color(image).enhance(rng.uniform(2.5, 4.0))
        out = ImageEnhance.Contrast(out).enhance(rng.uniform(1.5, 2.2))
        levels = rng.choice((2, 3, 4))
        arr = np.asarray(out, dtype=np.float64) / 255.0
        return Image.fromarray((np.rint(arr * (levels - 1)) / (levels - 1) * 255).astype(np.uint8))
    if kind == "noise":
        arr = np.asarray(image, dtype=np.float64)
        gen = np.random.default_rng(rng.randrange(2**32))
        block = rng.choice((1, 1, 2, 4))
        side = -(-arr.shape[0] // block)
        noise = gen.normal(0, rng.uniform(35, 80), (side, side, 3)).repeat(block, 0).repeat(block, 1)
        return Image.fromarray(np.clip(arr + noise[:arr.shape[0], :arr.shape[1]], 0, 255).astype(np.uint8))
    raise ValueError(f"unknown fried kind {kind!r}; kinds: {', '.join(FRIED)}")


def broken(image: Image.Image, kind: str, rng: random.Random) -> Image.Image:
    """A broken copy: one of distort.DISTORTIONS or FRIED."""
    from lora_studio.toy.distort import distort

    return fry(image, kind, rng) if kind in FRIED else distort(image, kind, rng)


def broken_kinds() -> tuple[str, ...]:
    """Every kind of broken image the model learns to reject."""
    from lora_studio.toy.distort import DISTORTIONS

    return (*DISTORTIONS, *FRIED)


def clean_image(seed: int) -> Image.Image:
    """A clean toy-world picture: a base scene (a quarter), a generic sheep of any look, or Tibbie (a fifth)."""
    from lora_studio.toy.character import draw_character_frame
    from lora_studio.toy.scenes import draw_scene
    from lora_studio.toy.sheep import ALL_LOOKS, draw_sheep_scene

    pick = random.Random(f"quality-{seed}").random()
    if pick < 0.25:
        return draw_scene(seed).image
    if pick < 0.45:
        return draw_character_frame(seed).image
    return draw_sheep_scene(seed, looks=ALL_LOOKS).image


def soften(images: list[Image.Image], share: float, vae, seed: int) -> list[Image.Image]:
    """A seeded share of the images as a generated image looks (VAE pass + augmentations), the rest as drawn."""
    from lora_studio.toy.train_judge import generated_like

    rng = random.Random(f"soften-{seed}")
    picked = [i for i in range(len(images)) if rng.random() < share]
    out = list(images)
    if picked:
        for i, image in zip(picked, generated_like([images[i] for i in picked], vae, seed)):
            out[i] = image
    return out


def draw_split(n_clean: int, per_kind: int, seed_base: int, share: float, vae) -> tuple[list, list[str]]:
    """Images and their kinds ('clean' or a broken kind) of a training or test set."""
    images = soften([clean_image(seed_base + i) for i in range(n_clean)], share, vae, seed_base)
    kinds = ["clean"] * n_clean
    for k, kind in enumerate(broken_kinds()):
        base = seed_base + 100_000 * (k + 1)
        # Distortions and fried looks happen to generated images too: soften first, then break.
        bases = soften([clean_image(base + i) for i in range(per_kind)], share, vae, base)
        images += [broken(im, kind, random.Random(f"broken-{base}-{i}")) for i, im in enumerate(bases)]
        kinds += [kind] * per_kind
    return images, kinds


def features_of(images) -> np.ndarray:
    """The model's feature matrix (one row per image)."""
    from lora_studio.toy.quality import quality_features

    return np.stack([quality_features(im) for im in images])


def fit(x: np.ndarray, clean: np.ndarray, s: QualitySettings) -> dict:
    """Standardise, then train dense layers with Adam on balanced binary cross-entropy; the model's JSON fields."""
    mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    z = (x - mean) / scale
    gen = np.random.default_rng(s.seed)
    sizes = [z.shape[1], *([s.hidden] if s.hidden else []), 1]
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        params += [gen.normal(0, np.sqrt(2.0 / a), (a, b)), np.zeros(b)]
    # Clean and broken weigh the same whatever their counts.
    weight = np.where(clean > 0, 0.5 / clean.mean(), 0.5 / (1 - clean.mean())) / len(clean)
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for step in range(1, s.steps + 1):
        acts = [z]
        for i in range(0, len(params), 2):
            h = acts[-1] @ params[i] + params[i + 1]
            acts.append(np.maximum(h, 0.0) if i + 2 < len(params) else h)
        p = 1.0 / (1.0 + np.exp(-np.clip(acts[-1][:, 0], -50, 50)))
        grad_out = ((p - clean) * weight)[:, None]
        grads = [None] * len(params)
        for i in range(len(params) - 2, -1, -2):
            grads[i] = acts[i // 2].T @ grad_out + s.l2 * params[i]
            grads[i + 1] = grad_out.sum(axis=0)
            if i:
                grad_out = (grad_out @ params[i].T) * (acts[i // 2] > 0)
        for j, g in enumerate(grads):
            m[j] = 0.9 * m[j] + 0.1 * g
            v[j] = 0.999 * v[j] + 0.001 * g * g
            params[j] -= s.lr * (m[j] / (1 - 0.9 ** step)) / (np.sqrt(v[j] / (1 - 0.999 ** step)) + 1e-8)
    rounded = lambda a: np.round(a, 6).tolist()  # noqa: E731 - plain JSON, stable across reruns
    return {"mean": rounded(mean), "scale": rounded(scale),
            "layers": [{"weights": rounded(params[i]), "bias": rounded(params[i + 1])} for i in range(0, len(params), 2)]}


def auc(positive: list[float], negative: list[float]) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos, neg = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def held_out_numbers(p: np.ndarray, kinds: list[str]) -> dict:
    """Accuracy at 0.5 of the clean images and of each broken kind, and each kind's AUC against clean."""
    kinds_arr = np.asarray(kinds)
    clean = p[kinds_arr == "clean"]
    out = {"clean_above_half": round(float((clean >= 0.5).mean()), 3), "n_clean": int(len(clean)), "kinds": {}}
    for kind in broken_kinds():
        bad = p[kinds_arr == kind]
        out["kinds"][kind] = {"below_half": round(float((bad < 0.5).mean()), 3),
                              "auc": round(auc(clean.tolist(), bad.tolist()), 4), "n": int(len(bad))}
    everything = p[kinds_arr != "clean"]
    out["auc_all_broken"] = round(auc(clean.tolist(), everything.tolist()), 4)
    return out


def demo_numbers(model) -> dict:
    """The shipped demo dataset: its kept frames should score high, its distorted ones low."""
    from lora_studio import paths
    from lora_studio.toy.dataset import read_distorted

    dataset = paths.assets_dir() / "demo-dataset"
    distorted = read_distorted(dataset)
    files = sorted(dataset.glob("*.png"))
    scores = dict(zip((f.name for f in files), model.quality(Image.open(f).convert("RGB") for f in files)))
    kept = [q for name, q in scores.items() if name not in distorted]
    bad = {name: round(scores[name], 3) for name in distorted}
    return {"kept_above_half": round(sum(q >= 0.5 for q in kept) / len(kept), 3), "n_kept": len(kept),
            "kept_lowest": round(min(kept), 3), "distorted_below_half": sum(q < 0.5 for q in bad.values()),
            "n_distorted": len(bad), "distorted": bad}


def train_quality(out: Path, s: QualitySettings, log: Callable[[str], None] = print) -> dict:
    """Draw, train, measure and save a quality model; return its card."""
    import torch

    from lora_studio.models.load import load_base
    from lora_studio.toy.quality import EXTRA_NAMES, ToyQuality

    started = time.monotonic()
    vae = load_base(s.vae).vae.float().eval()
    base = 1_000_000 * (s.seed + 3)
    with torch.no_grad():
        images, kinds = draw_split(s.clean_images, s.broken_per_kind, base, s.soft_share, vae)
        test_images, test_kinds = draw_split(s.test_clean, s.test_per_kind, base + 50_000_000, s.soft_share, vae)
    x, x_test = features_of(images), features_of(test_images)
    log(f"drew {len(images)} training and {len(test_images)} test images [{time.monotonic() - started:.0f}s]")
    card = {"kind": "toy quality", "features": f"image statistics + {', '.join(EXTRA_NAMES)}",
            "threshold": 0.5, "broken_kinds": list(broken_kinds()), "settings": asdict(s),
            **fit(x, np.asarray([k == "clean" for k in kinds], dtype=np.float64), s)}
    model = ToyQuality(card)
    card["measured"] = {"held_out_test": held_out_numbers(model.probabilities(x_test), test_kinds),
                        "train_clean_above_half": round(float((model.probabilities(x[np.asarray(kinds) == "clean"])
                                                               >= 0.5).mean()), 3),
                        "demo_dataset": demo_numbers(model)}
    card["summary"] = {"train_images": len(images), "test_images": len(test_images),
                       "seconds": round(time.monotonic() - started)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(card, indent=1) + "\n")
    log(json.dumps(card["measured"], indent=1))
    log(f"saved {out} [{card['summary']['seconds']}s]")
    return card


def main(argv: list[str] | None = None) -> None:
    """Command line: python -m lora_studio.toy.train_quality [--out FILE] [--clean-images N] …"""
    from lora_studio.toy.quality import quality_path

    defaults = QualitySettings()
    parser = argparse.ArgumentParser(prog="python -m lora_studio.toy.train_quality",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=quality_path())
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--clean-images", type=int, default=defaults.clean_images)
    parser.add_argument("--broken-per-kind", type=int, default=defaults.broken_per_kind)
    parser.add_argument("--hidden", type=int, default=defaults.hidden, help="hidden units; 0: logistic regression")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    args = parser.parse_args(argv)
    settings = QualitySettings(seed=args.seed, clean_images=args.clean_images, broken_per_kind=args.broken_per_kind,
                               hidden=args.hidden, steps=args.steps)
    train_quality(args.out, settings, lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
