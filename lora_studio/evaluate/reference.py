"""The character a grid is judged against: the kept frames of the run's dataset, as reference features.

A run folder's job.toml names its dataset; the Dataset tab's review says which frames are kept and
what their tags are. The scorer's features of those frames are computed once per (scorer, frame
files) and cached on disk, so scoring a second grid of the same character reads them back.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lora_studio import paths, runfiles
from lora_studio.errors import UserError


@dataclass
class Character:
    """Who a run's cells should show: the kept frames' files, their tags and the trigger word."""

    dataset: Path
    frame_files: list[Path]
    tag_lists: list[list[str]]
    trigger_word: str

    def own_tags(self) -> set[str]:
        """The tags that belong to the character (evaluate/tags.py)."""
        from lora_studio.evaluate.tags import character_tags

        return character_tags(self.tag_lists, self.trigger_word)


def run_config_file(run_folder: Path) -> Path | None:
    """The job.toml that describes a run folder: its own, or its sweep's one level up (bs1/ … bs4/)."""
    for folder in (Path(run_folder), Path(run_folder).parent):
        if (folder / runfiles.JOB_FILE).is_file():
            return folder / runfiles.JOB_FILE
    return None


def run_character(run_folder: Path) -> Character:
    """The character of the dataset a run was trained on (review exclusions and tag edits applied)."""
    from lora_studio.jobs import load_job

    job = run_config_file(run_folder)
    if job is None:
        raise UserError(f"{run_folder} has no job.toml, so its dataset is unknown",
                        "score a grid of a run trained by the studio, or pass --dataset DIR")
    config = load_job(job.parent).config
    return dataset_character(config.dataset, config)


def dataset_character(dataset: str | Path, config=None) -> Character:
    """The character of a dataset folder's kept frames (a run's config supplies the trigger word if any)."""
    import dataclasses

    from lora_studio.config import TrainConfig
    from lora_studio.data.captions import split_tags
    from lora_studio.data.run_frames import load_kept_frames, with_review_trigger

    config = dataclasses.replace(config or TrainConfig(), dataset=str(dataset))
    config = with_review_trigger(config)
    frames, _skipped = load_kept_frames(config)
    if not frames:
        raise UserError(f"{dataset} has no kept frames to compare the grid with",
                        "keep some frames in the Dataset tab, or pass another --dataset")
    return Character(Path(dataset), [f.path for f in frames], [split_tags(f.caption) for f in frames],
                     config.trigger_word)


def _files_digest(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.name.encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def reference_cache_path(scorer, files: list[Path]) -> Path:
    """Where a scorer's features of these frame files are kept."""
    key = hashlib.sha256(json.dumps([scorer.name, scorer.version, _files_digest(files)]).encode()).hexdigest()
    return paths.cache_dir() / "score-references" / f"{key[:24]}.npy"


def reference_features(scorer, character: Character) -> np.ndarray:
    """The scorer's features of the kept frames, from the cache when the same files were seen before."""
    from PIL import Image

    cached = reference_cache_path(scorer, character.frame_files)
    if cached.is_file():
        return np.load(cached)
    images = []
    for path in character.frame_files:
        with Image.open(path) as im:
            images.append(im.convert("RGB"))
    features = np.asarray(scorer.reference(images), dtype=np.float32)
    cached.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, features)
    runfiles.atomic_write(cached, buffer.getvalue())
    return features
