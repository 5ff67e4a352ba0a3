"""Train the toy judge on the generator's ground truth, measure it, ship it to assets/toy-judge/.

    python -m lora_studio.toy.train_judge                       # ~10 min on 2 CPU cores → assets/toy-judge
    python -m lora_studio.toy.train_judge --steps 50 --out /tmp/judge   # a quick look

Data: generic sheep of every look but the held-out ones (Tibbie's and a few others kept for
measuring), in every pose and place, plus sheep-less base scenes; tags are the scenes' own captions.
Pictures a diffusion model makes are softer than drawn ones, so training sees them through the toy
VAE (encode → decode, as every generated image is), blurred, noised, shifted and downscaled; never
recoloured, since colour is identity here. The identity embedding is a cosine classifier over the
training looks (CCIP is trained the same way across many characters); its same/different threshold
is calibrated on held-out looks and the accuracy measured on other held-out images.
Seeded and fixed-length: a rerun on the same machine gives the same weights.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from lora_studio.toy.judge import EMBEDDING_DIM, VOCABULARY, JudgeNet, ToyJudge, judge_dir, save_judge
from lora_studio.toy.sheep import ALL_LOOKS, TIBBIE_LOOK, Look, draw_sheep_scene

HELD_OUT_EXTRA = 10  # looks besides Tibbie's that the judge never trains on, to measure it by


@dataclass
class JudgeSettings:
    """Knobs of one judge training run; the defaults made the shipped judge."""

    seed: int = 0
    sheep_images: int = 9000
    scene_images: int = 2500
    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-3
    width: int = 32
    identity_scale: float = 16.0
    identity_margin: float = 0.2
    vae: str = "toy"  # the toy model whose VAE makes training images look generated
    eval_sheep: int = 600  # held-out images the tags are measured on (plus a quarter as many sheep-less scenes)
    identity_refs: int = 8  # reference frames per held-out look, as a small dataset would give
    identity_queries: int = 12  # generated-like images per held-out look
    soft_images: int = 2500  # training images also seen through the VAE (a VAE pass costs ~0.1 s per image)


def held_out_looks(seed: int = 0) -> list[Look]:
    """Tibbie's look and HELD_OUT_EXTRA others, never trained on."""
    others = [look for look in ALL_LOOKS if look != TIBBIE_LOOK]
    return [TIBBIE_LOOK, *random.Random(f"judge-held-out-{seed}").sample(others, HELD_OUT_EXTRA)]


def multi_hot(tags: list[str]) -> torch.Tensor:
    """Tags → a 0/1 vector over the judge's vocabulary (tags outside it are ignored)."""
    v = torch.zeros(len(VOCABULARY))
    for tag in tags:
        if tag in VOCABULARY:
            v[VOCABULARY.index(tag)] = 1.0
    return v


def draw_set(n_sheep: int, n_scenes: int, looks: list[Look], seed_base: int):
    """Images, tag vectors and look indices (-1: no sheep) of a training or test set."""
    from lora_studio.toy.scenes import draw_scene

    images, targets, ids = [], [], []
    for i in range(n_sheep):
        rng = random.Random(f"judge-look-{seed_base}-{i}")
        look_index = rng.randrange(len(looks))
        scene = draw_sheep_scene(seed_base + i, look=looks[look_index])
        images.append(scene.image)
        targets.append(multi_hot(scene.tags))
        ids.append(look_index)
    for i in range(n_scenes):
        scene = draw_scene(seed_base + 500_000 + i)
        images.append(scene.image)
        targets.append(multi_hot(scene.tags))
        ids.append(-1)
    return images, torch.stack(targets), torch.tensor(ids)


def through_vae(vae, x: torch.Tensor, batch: int = 128) -> torch.Tensor:
    """Encode → decode with the toy VAE: the softness every generated image has."""
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(vae.decode(vae.encode(x[i:i + batch]).latent_dist.mode()).sample.clamp(-1, 1))
    return torch.cat(out)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur (sigma per image, 0 = none) with a 5x5 separable kernel."""
    offsets = torch.arange(-2, 3, dtype=x.dtype)
    k = torch.exp(-offsets[None, :] ** 2 / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    k = k / k.sum(dim=1, keepdim=True)  # (n, 5)
    n, c, h, w = x.shape
    padded = nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    # horizontal then vertical, one kernel per image (grouped conv over n*c channels)
    kh = k.repeat_interleave(c, dim=0)[:, None, None, :]
    y = nn.functional.conv2d(padded.reshape(1, n * c, h + 4, w + 4), kh, groups=n * c)
    kv = k.repeat_interleave(c, dim=0)[:, None, :, None]
    y = nn.functional.conv2d(y, kv, groups=n * c)
    return y.reshape(n, c, h, w)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flips, small shifts and zooms, blur, downscaling, noise, brightness/contrast; never a hue change."""
    n = len(x)
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    scale = 1 + (torch.rand(n, generator=gen) * 0.25 - 0.1)
    shift = (torch.rand(n, 2, generator=gen) - 0.5) * 0.2
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift
    grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = nn.functional.grid_sample(x, grid, padding_mode="border", align_corners=False)
    small = torch.rand(n, generator=gen) < 0.3
    if small.any():
        size = int(torch.randint(20, 40, (1,), generator=gen))
        down = nn.functional.interpolate(x[small], size=(size, size), mode="bilinear", align_corners=False,
                                         antialias=True)
        x[small] = nn.functional.interpolate(down, size=x.shape[-2:], mode="bilinear", align_corners=False)
    sigma = torch.rand(n, generator=gen) * 1.2 * (torch.rand(n, generator=gen) < 0.6)
    x = gaussian_blur(x, sigma)
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.2
    brightness = (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.12
    x = x * contrast + brightness
    x = x + torch.randn(x.shape, generator=gen) * torch.rand(n, 1, 1, 1, generator=gen) * 0.06
    return x.clamp(-1, 1)


def train_net(s: JudgeSettings, log: Callable[[str], None]) -> tuple[JudgeNet, dict]:
    """Draw the data, train tags and identity jointly; return the net and a summary."""
    from lora_studio.models.load import load_base
    from lora_studio.toy.judge import to_batch

    started = time.monotonic()
    torch.manual_seed(s.seed)
    held = held_out_looks(s.seed)
    train_looks = [look for look in ALL_LOOKS if look not in held]
    images, targets, ids = draw_set(s.sheep_images, s.scene_images, train_looks, 1_000_000 * (s.seed + 7))
    crisp = to_batch(images)
    vae = load_base(s.vae).vae.float().eval()
    gen = torch.Generator().manual_seed(s.seed + 1)
    # A random subset is also kept as the VAE returns it; each batch mixes both kinds.
    soft_of = torch.randperm(len(crisp), generator=gen)[:min(s.soft_images, len(crisp))]
    soft = through_vae(vae, crisp[soft_of])
    log(f"drew {len(images)} training images, {len(soft)} of them through the VAE [{time.monotonic() - started:.0f}s]")

    net = JudgeNet(len(VOCABULARY), len(train_looks), s.width)
    opt = torch.optim.AdamW(net.parameters(), lr=s.lr, weight_decay=1e-4)
    from lora_studio.toy.pretrain import cosine_lr

    warmup = max(1, s.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: cosine_lr(step, s.steps, warmup))
    net.train()
    recent = []
    n_soft = s.batch_size // 2
    for step in range(s.steps):
        pick = torch.randint(0, len(soft), (n_soft,), generator=gen)
        idx = torch.cat([soft_of[pick], torch.randint(0, len(crisp), (s.batch_size - n_soft,), generator=gen)])
        x = augment(torch.cat([soft[pick], crisp[idx[n_soft:]]]), gen)
        tag_logits, emb = net(x)
        loss = nn.functional.binary_cross_entropy_with_logits(tag_logits, targets[idx])
        has_look = ids[idx] >= 0
        if has_look.any():
            # Cosine classifier with an additive margin (CosFace): embeddings of one look cluster tightly.
            classes = nn.functional.normalize(net.identity_classes, dim=1)
            cos = emb[has_look] @ classes.T
            labels = ids[idx][has_look]
            cos = cos - s.identity_margin * nn.functional.one_hot(labels, len(train_looks))
            loss = loss + nn.functional.cross_entropy(s.identity_scale * cos, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        recent.append(loss.item())
        if (step + 1) % 100 == 0 or step + 1 == s.steps:
            log(f"judge step {step + 1}/{s.steps} loss {sum(recent) / len(recent):.4f} "
                f"[{time.monotonic() - started:.0f}s]")
            recent = []
    net.eval()
    return net, {"train_looks": len(train_looks), "held_out_looks": [look.name for look in held],
                 "train_seconds": round(time.monotonic() - started)}


def generated_like(images, vae, seed: int) -> list:
    """Test images made to look generated (VAE pass + the training augmentations), as PIL images."""
    from PIL import Image

    from lora_studio.toy.judge import to_batch

    x = augment(through_vae(vae, to_batch(images)), torch.Generator().manual_seed(seed))
    arrays = ((x.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    return [Image.fromarray(a) for a in arrays]


def neighbours(look: Look) -> list[Look]:
    """Looks that differ from this one in exactly one of fleece, face and bow: the hardest impostors."""
    def differences(other: Look) -> int:
        return sum(a != b for a, b in zip((look.fleece, look.face, look.bow), (other.fleece, other.face, other.bow)))

    return [other for other in ALL_LOOKS if differences(other) == 1]


def identity_pairs(judge: ToyJudge, looks: list[Look], vae, seed_base: int, refs: int = 8, queries: int = 12):
    """Similarities to each look's reference (its crisp frames) of generated-like queries: of the same look,
    of the other looks, and of looks that differ from it in one feature only (a pink bow on another sheep)."""
    same, different, lookalike = [], [], []
    references, query_sets = [], []
    for k, look in enumerate(looks):
        frames = [draw_sheep_scene(seed_base + 1000 * k + i, look=look).image for i in range(refs)]
        qs = [draw_sheep_scene(seed_base + 1000 * k + 500 + i, look=look).image for i in range(queries)]
        references.append(judge.reference(frames))
        query_sets.append(judge.identity(generated_like(qs, vae, seed_base + k)))
        near = random.Random(f"lookalikes-{seed_base}-{k}").sample(neighbours(look), 3)
        impostors = [draw_sheep_scene(seed_base + 1000 * k + 700 + i, look=near[i % 3]).image for i in range(queries)]
        lookalike.extend((judge.identity(generated_like(impostors, vae, seed_base + 50 + k)) @ references[-1]).tolist())
    for a, ref in enumerate(references):
        for b, emb in enumerate(query_sets):
            (same if a == b else different).extend((emb @ ref).tolist())
    return same, different, lookalike


def best_threshold(same: list[float], different: list[float]) -> float:
    """The threshold with the best balanced accuracy (same ≥ t, different < t)."""
    candidates = sorted(set(same) | set(different))
    best, best_t = -1.0, 0.5
    for t in candidates:
        acc = (sum(s >= t for s in same) / len(same) + sum(d < t for d in different) / len(different)) / 2
        if acc > best:
            best, best_t = acc, t
    return best_t


def tag_scores(judge: ToyJudge, images, targets: torch.Tensor) -> dict:
    """Micro precision and recall of the judge's tags against the ground truth."""
    predicted = torch.stack([multi_hot(tags) for tags in judge.tags(images)])
    tp = (predicted * targets).sum().item()
    precision = tp / max(1.0, predicted.sum().item())
    recall = tp / max(1.0, targets.sum().item())
    per_tag = {}
    for i, tag in enumerate(VOCABULARY):
        support = targets[:, i].sum().item()
        if support:
            per_tag[tag] = round((predicted[:, i] * targets[:, i]).sum().item() / support, 3)
    return {"precision": round(precision, 3), "recall": round(recall, 3), "recall_per_tag": per_tag}


def measure(net: JudgeNet, s: JudgeSettings, summary: dict, log: Callable[[str], None]) -> dict:
    """Calibrate the identity threshold on held-out looks; measure tags and identity on other held-out images."""
    from lora_studio.models.load import load_base

    vae = load_base(s.vae).vae.float().eval()
    held = held_out_looks(s.seed)
    card = {"vocabulary": list(VOCABULARY), "width": s.width, "embedding_dim": EMBEDDING_DIM,
            "identity_threshold": 0.5, "settings": asdict(s), "summary": summary}
    judge = ToyJudge(net, card)
    # Calibrate on the extra held-out looks (Tibbie's stays unseen until the LoRA proof uses it), against
    # the hardest impostors: "same character" must reject a sheep that shares two of her three features.
    same, _, lookalike = identity_pairs(judge, held[1:], vae, 9_000_000 + s.seed, s.identity_refs, s.identity_queries)
    card["identity_threshold"] = round(best_threshold(same, lookalike), 4)
    judge = ToyJudge(net, card)
    # Measure on new images of the same held-out looks.
    same, different, lookalike = identity_pairs(judge, held[1:], vae, 9_500_000 + s.seed, s.identity_refs,
                                                s.identity_queries)
    t = card["identity_threshold"]
    identity = {"same_accuracy": round(sum(x >= t for x in same) / len(same), 3),
                "different_accuracy": round(sum(x < t for x in different) / len(different), 3),
                "lookalike_rejected": round(sum(x < t for x in lookalike) / len(lookalike), 3),
                "pairs": len(same) + len(different) + len(lookalike)}
    images, targets, _ = draw_set(s.eval_sheep, s.eval_sheep // 4, held, 8_000_000 + s.seed)
    tags = {"drawn": tag_scores(judge, images, targets),
            "generated_like": tag_scores(judge, generated_like(images, vae, s.seed), targets)}
    card["measured"] = {"identity_on_held_out_looks": identity, "tags_on_held_out_images": tags}
    log(f"identity threshold {t}: {identity}")
    log(f"tags drawn: P {tags['drawn']['precision']} R {tags['drawn']['recall']}; generated-like: "
        f"P {tags['generated_like']['precision']} R {tags['generated_like']['recall']}")
    return card


def train_judge(out: Path, s: JudgeSettings, log: Callable[[str], None] = print) -> dict:
    """Train, measure and save a judge; return its card."""
    started = time.monotonic()
    log(f"toy judge: {asdict(s)} threads={torch.get_num_threads()}")
    net, summary = train_net(s, log)
    card = measure(net, s, summary, log)
    card["summary"]["total_seconds"] = round(time.monotonic() - started)
    save_judge(net, card, out)
    log(f"saved {out} [{card['summary']['total_seconds']}s]")
    return card


def main(argv: list[str] | None = None) -> None:
    """Command line: python -m lora_studio.toy.train_judge [--out DIR] [--steps N] …"""
    defaults = JudgeSettings()
    parser = argparse.ArgumentParser(prog="python -m lora_studio.toy.train_judge",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=judge_dir())
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--sheep-images", type=int, default=defaults.sheep_images)
    parser.add_argument("--scene-images", type=int, default=defaults.scene_images)
    parser.add_argument("--vae", default=defaults.vae, help="toy model whose VAE softens training images")
    args = parser.parse_args(argv)
    settings = JudgeSettings(seed=args.seed, steps=args.steps, sheep_images=args.sheep_images,
                             scene_images=args.scene_images, vae=args.vae)
    train_judge(args.out, settings, lambda line: print(line, flush=True))


if __name__ == "__main__":
    main()
