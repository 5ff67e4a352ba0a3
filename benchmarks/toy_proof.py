"""The toy world's proof, measured: a demo-preset LoRA makes tibbie appear; the table and picture.

    python benchmarks/toy_proof.py                         # shipped toy model → table + assets/toy-lora-proof.png
    python benchmarks/toy_proof.py --base /tmp/r5 --png /tmp/proof.png   # a freshly pretrained model
    python benchmarks/toy_proof.py --lora runs/x/tibbie-000002.safetensors   # measure a LoRA you trained

Trains `presets/demo.toml` on `assets/demo-dataset` with its distorted frames excluded in review (in a
throwaway studio folder, so the user's own review state is untouched), then renders two prompts at
LoRA weight 0, 0.6 and 1 over 6 seeds the way tests/toy/test_lora_proof.py does (and the unseen pose once more
with her pruned tag "pink bow" added back to the prompt, a table row only) and prints, as a
markdown table, what the toy judge sees (how many of 6 show tibbie, a sheep, a tree; mean identity
similarity to the kept demo frames) beside the colour shares of lora_studio/toy/measure.py.
Before that it judges the base model alone on the generic sheep prompts.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from statistics import mean

WEIGHTS = (0.0, 0.6, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="toy", help="'toy' (the shipped model) or a toy-model folder")
    parser.add_argument("--png", type=Path, default=None, help="contact sheet to write (rows: prompt × weight)")
    parser.add_argument("--lora", type=Path, default=None,
                        help="measure this LoRA file (trained on the toy model) instead of training the demo one")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["LORA_STUDIO_HOME"] = tempfile.mkdtemp(prefix="toy-proof-")

    from lora_studio.generate.pipeline import LoraRenderer
    from lora_studio.models.load import load_base
    from lora_studio.toy.measure import character_colour_shares, character_score, tree_score
    from lora_studio.toy.preview import contact_sheet
    from lora_studio.toy.proof import CHARACTER_PROMPT, SEEDS, UNSEEN_PROMPT, UNSEEN_PROMPT_WITH_TAGS, render_seeds, \
        train_demo_lora

    lora = args.lora
    if lora is None:
        started = time.monotonic()
        lora, result = train_demo_lora(Path(os.environ["LORA_STUDIO_HOME"]) / "run", base=args.base)
        print(f"trained {result['steps']} steps in {time.monotonic() - started:.1f} s")

    from lora_studio.toy.judge import load_judge
    from lora_studio.toy.proof import BASE_SHEEP_PROMPTS, judge_counts, kept_demo_frames

    judge = load_judge()
    reference = judge.reference(kept_demo_frames())
    images = []
    with LoraRenderer(load_base(args.base)) as renderer:
        print("| base prompt (no LoRA) | sheep (judge, of 6) | tree (of 6) |\n|---|---|---|")
        for prompt in BASE_SHEEP_PROMPTS:
            counts = judge_counts(render_seeds(renderer, lora, 0.0, prompt), judge, reference)
            print(f"| {prompt} | {counts['sheep']} | {counts['tree']} |", flush=True)
        print("\n| prompt | LoRA weight | tibbie (judge, of 6) | mean similarity | sheep | tree | "
              "fleece-white share | pink share | tree colour score |\n|---|---|---|---|---|---|---|---|---|")
        for prompt in (CHARACTER_PROMPT, UNSEEN_PROMPT, UNSEEN_PROMPT_WITH_TAGS):
            for weight in WEIGHTS:
                row = render_seeds(renderer, lora, weight, prompt)
                if prompt != UNSEEN_PROMPT_WITH_TAGS:  # the picture keeps its two prompts (README, assets)
                    images += row
                counts = judge_counts(row, judge, reference)
                pink = mean(character_colour_shares(image)["pink"] for image in row)
                print(f"| {prompt} | {weight:g} | {counts['tibbie']} | {mean(counts['similarity']):.3f} | "
                      f"{counts['sheep']} | {counts['tree']} | {mean(map(character_score, row)):.4f} | {pink:.4f} | "
                      f"{mean(map(tree_score, row)):.3f} |", flush=True)
    if args.png:
        contact_sheet(images, columns=len(SEEDS), scale=2).save(args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
