"""Tiny stand-ins for the anime scorer's ONNX models, with the real ones' input/output names and shapes.

Their outputs are simple functions of an image's colour, so a test knows what the right pre-processing
must give. They prove loading, pre-processing, thresholds and wiring, never quality.

- tagger (SmilingWolf WD14 layout: model.onnx + selected_tags.csv), input `input` [B,448,448,3] BGR 0–255,
  output `output` [B,6]: `blue theme` / `red theme` from the blue and red channel means (a channel mix-up
  swaps them), `white background` = the share of white pixels (shows the white padding), the character
  `tibbie (toy)` from the green mean (0.75 at green 150: over the general threshold, under the character
  one), a rating and the emoticon `^_^`.
- CCIP (deepghs/ccip_onnx layout): `model_feat.onnx` [B,3,384,384] → [B,768] (the channel means, tiled),
  `model_metrics.onnx` [N,768] → [N,N] = clip(0.5·(1 − cosine), 0, 1), `metrics.json` threshold 0.1785.
- AI-corrupt classifier (deepghs/ai_image_corrupted layout): [B,3,384,384] → softmax [B,2] over
  meta.json's labels ["normal", "corrupted"]; the greener the image, the more "corrupted".
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from lora_studio.evaluate.anime import CCIP_MODEL, CCIP_REPO, CORRUPT_MODEL, CORRUPT_REPO
from lora_studio.evaluate.wd14 import DEFAULT_TAGGER_REPO

TAGS = [  # (name as in selected_tags.csv, category: 0 general, 4 character, 9 rating)
    ("general", 9), ("blue_theme", 0), ("red_theme", 0), ("white_background", 0), ("tibbie_(toy)", 4), ("^_^", 0)]
CCIP_THRESHOLD = 0.1785


class _Tagger(torch.nn.Module):
    def forward(self, x):  # x: [B, H, W, 3], BGR, 0–255
        b, g, r = x[..., 0].mean(dim=(1, 2)), x[..., 1].mean(dim=(1, 2)), x[..., 2].mean(dim=(1, 2))
        white = (x.min(dim=-1).values > 250).float().mean(dim=(1, 2))
        rating = torch.full_like(b, 0.9)
        return torch.stack([rating, torch.sigmoid((b - r) / 10), torch.sigmoid((r - b) / 10), white,
                            torch.sigmoid((g - 128) / 20), torch.full_like(b, 0.1)], dim=1)


class _CCIPFeature(torch.nn.Module):
    def forward(self, x):  # [B, 3, 384, 384] CLIP-normalised → [B, 768]
        return x.mean(dim=(2, 3)).repeat(1, 256)


class _CCIPMetric(torch.nn.Module):
    def forward(self, f):  # [N, 768] → [N, N]
        f = f / f.norm(dim=1, keepdim=True).clamp_min(1e-6)
        return torch.clamp(0.5 * (1 - f @ f.T), 0, 1)


class _Corrupt(torch.nn.Module):
    def forward(self, x):  # [B, 3, 384, 384] in −1…1 → softmax over (normal, corrupted)
        green = x[:, 1].mean(dim=(1, 2))
        return torch.softmax(torch.stack([torch.zeros_like(green), 8 * green], dim=1), dim=1)


def _export(module: torch.nn.Module, example: torch.Tensor, path: Path, output_axes=(0,)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript exporter (dynamo=False) needs only the `onnx` package; the dynamo one also needs
    # onnxscript. torch 2.13 still has it, with a DeprecationWarning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {a: "batch" for a in output_axes}},
                          dynamo=False)


def build_tagger(folder: Path) -> Path:
    """model.onnx + selected_tags.csv of a tiny WD14 tagger in `folder`."""
    _export(_Tagger(), torch.zeros(1, 448, 448, 3), folder / "model.onnx")
    lines = ["tag_id,name,category,count"] + [f"{i},{name},{cat},1" for i, (name, cat) in enumerate(TAGS)]
    (folder / "selected_tags.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def build_model_dir(root: Path) -> Path:
    """A model folder (REPO/FILE) with all seven files the anime scorer needs, as an offline user makes one."""
    ccip = root / CCIP_REPO / CCIP_MODEL
    _export(_CCIPFeature(), torch.zeros(1, 3, 384, 384), ccip / "model_feat.onnx")
    _export(_CCIPMetric(), torch.zeros(2, 768), ccip / "model_metrics.onnx", output_axes=(0, 1))
    (ccip / "metrics.json").write_text(json.dumps({"threshold": CCIP_THRESHOLD}), encoding="utf-8")
    build_tagger(root / DEFAULT_TAGGER_REPO)
    corrupt = root / CORRUPT_REPO / CORRUPT_MODEL
    _export(_Corrupt(), torch.zeros(1, 3, 384, 384), corrupt / "model.onnx")
    (corrupt / "meta.json").write_text(json.dumps({"labels": ["normal", "corrupted"]}), encoding="utf-8")
    return root


def as_hub_cache(model_dir: Path, repo_id: str, hf_home: Path) -> Path:
    """Copy one repo of `model_dir` into a Hugging Face hub cache layout under `hf_home` (as a download leaves it)."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(model_dir / repo_id, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return hf_home
