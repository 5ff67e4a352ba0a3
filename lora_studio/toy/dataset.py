"""The demo dataset: frames of Tibbie with tag captions, plus a few distorted ones named in a sidecar.

`lora-studio demo-dataset OUT_DIR` calls write_demo_dataset; assets/demo-dataset/ is the same
function's output with the defaults, so the studio has something to train on out of the box.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from lora_studio.errors import UserError

# "sitting on tree" is left out on purpose: the LoRA proof prompts it to check that the LoRA
# generalises to a pose the dataset never showed while the base model still draws the tree.
DEMO_POSES = ("standing", "lying on beach", "full body", "close-up")
DISTORTED_SIDECAR = "distorted.json"
# Her own feature, pruned from what the tagger writes, as character-LoRA guides (kohya's among them) advise: a
# tag on every frame keeps what it shows, so her bow would stay under "pink bow" and a prompt without the tag
# ("tibbie, sheep, sitting on tree") would get none (benchmarks/toy_world.md, session 15: her on the tree at
# 0.6 in 22 % of renders captioned, 58 % pruned). The shipped demo set is the dataset after that edit.
DEMO_PRUNED_TAGS = ("pink bow",)


def write_demo_dataset(out_dir: str | Path, n_frames: int = 40, n_distorted: int = 6, seed: int = 0,
                       poses: tuple[str, ...] = DEMO_POSES, pruned_tags: tuple[str, ...] = DEMO_PRUNED_TAGS) -> Path:
    """Write n_frames good frames and n_distorted distorted ones (frame_000.png + .txt …) into out_dir.

    Captions are the tagger's tags minus pruned_tags (pass () for the tagger's own captions). Distorted
    frames get ordinary captions and are listed only in distorted.json ({"frame_017.png": "warped", …});
    their positions among the frames are shuffled.
    """
    from lora_studio.toy.character import draw_character_frame
    from lora_studio.toy.distort import DISTORTIONS, distort

    out = Path(out_dir).expanduser()
    if n_frames < 1 or n_distorted < 0:
        raise UserError(f"n_frames must be ≥ 1 and n_distorted ≥ 0 (got {n_frames}, {n_distorted})")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} is not empty", "give a new or empty folder for the demo dataset")
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"demo-{seed}")
    total = n_frames + n_distorted
    distorted_slots = set(rng.sample(range(total), n_distorted))
    kinds = [DISTORTIONS[i % len(DISTORTIONS)] for i in range(n_distorted)]
    rng.shuffle(kinds)
    sidecar: dict[str, str] = {}
    good = 0
    for index in range(total):
        name = f"frame_{index:03d}"
        if index in distorted_slots:
            scene = draw_character_frame(seed * 100_003 + 50_000 + index, rng.choice(poses))
            kind = kinds.pop()
            image = distort(scene.image, kind, random.Random(f"distort-{seed}-{index}"))
            sidecar[f"{name}.png"] = kind
        else:
            # Cycle through the poses so every pose is in the set in near-equal numbers.
            scene = draw_character_frame(seed * 100_003 + index, poses[good % len(poses)])
            image = scene.image
            good += 1
        image.save(out / f"{name}.png")
        caption = ", ".join(tag for tag in scene.tags if tag not in pruned_tags)
        (out / f"{name}.txt").write_text(caption + "\n")
    (out / DISTORTED_SIDECAR).write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    return out


def read_distorted(dataset_dir: str | Path) -> dict[str, str]:
    """The sidecar of a demo dataset: file name → kind of distortion ({} when there is none)."""
    path = Path(dataset_dir) / DISTORTED_SIDECAR
    return json.loads(path.read_text()) if path.is_file() else {}
