"""The deepghs / SmilingWolf ONNX model files: found locally or downloaded once, then opened on the CPU.

Why not `dghs-imgutils` (deepghs' own library, which the scoring issue prefers if it installs cleanly):
`pip install --dry-run dghs-imgutils` (0.19.0, checked 2026-12) would downgrade numpy 2.4 → 1.26 under our
torch/diffusers pins and pull ~30 packages (opencv-contrib, pandas, scikit-learn, shapely, …) for three
small ONNX graphs. So we call `onnxruntime` + `huggingface_hub` directly and copy the few lines of
pre-processing from imgutils' source (imgutils/metrics/ccip.py, imgutils/tagging/wd14.py, and
sdeval/corrupt for the AI-corrupt classifier); each copy names its source where it is used.

Where a file comes from, in order:
1. a local folder (`model_dir=` or the `LORA_STUDIO_ONNX_DIR` environment variable) laid out as
   `FOLDER/REPO_ID/FILENAME`, e.g. `FOLDER/deepghs/ccip_onnx/ccip-caformer-24-randaug-pruned/model_feat.onnx`,
   which is what `hf download REPO FILE --local-dir FOLDER/REPO` writes on a connected machine;
2. the Hugging Face hub cache (HF_HOME / HF_HUB_CACHE): a cached file is used without asking the hub;
   a missing one is downloaded once, with a line on stderr and huggingface_hub's own tqdm progress bar
   (the worker's log in the studio). HF_HUB_OFFLINE=1 never asks the hub.
Whatever is missing is named in one UserError, with the commands that fetch it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from lora_studio.errors import UserError

MODEL_DIR_ENV = "LORA_STUDIO_ONNX_DIR"


@dataclass(frozen=True)
class ModelFile:
    """One file of a hub model repository."""

    repo_id: str
    filename: str

    def __str__(self) -> str:
        return f"{self.repo_id}/{self.filename}"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _offline() -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE once at import (transformers imports it early), so a user who
    # sets it later in the same process, or a test, would not be heard; read the environment now.
    from huggingface_hub import constants

    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or bool(constants.HF_HUB_OFFLINE)


def _hub_cache() -> str:
    # Same reason as _offline: honour HF_HUB_CACHE / HF_HOME as they are now, not as they were at import.
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return constants.HF_HUB_CACHE


def local_model_dir(model_dir: str | os.PathLike | None = None) -> Path | None:
    """The folder of hand-placed model files, if one is given (argument, else LORA_STUDIO_ONNX_DIR)."""
    chosen = model_dir if model_dir is not None else os.environ.get(MODEL_DIR_ENV)
    return Path(chosen).expanduser() if chosen else None


def fetch_files(files: list[ModelFile], model_dir: str | os.PathLike | None = None) -> dict[ModelFile, Path]:
    """Local paths of all `files`: from the local folder, else the hub cache (downloading what is missing)."""
    folder = local_model_dir(model_dir)
    if folder is not None:
        found = {f: folder / f.repo_id / f.filename for f in files}
        missing = [f for f, path in found.items() if not path.is_file()]
        if missing:
            raise _missing_error(missing, "{are} not in the model folder", str(folder))
        return found

    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    cache, local_only = _hub_cache(), _offline()
    found, missing = {}, []
    why = "{are} not in the Hugging Face cache and HF_HUB_OFFLINE is set" if local_only else ""
    for f in files:
        cached = try_to_load_from_cache(f.repo_id, f.filename, cache_dir=cache)
        if isinstance(cached, str):
            # Once downloaded, a file is used as it is: no request to the hub (an offline machine would wait
            # through its retries), and the scores keep meaning the same until the user deletes the cache.
            found[f] = Path(cached)
            continue
        if not local_only:
            print(f"downloading {f} (once) into {cache}", file=sys.stderr, flush=True)
        try:
            found[f] = Path(hf_hub_download(f.repo_id, f.filename, cache_dir=cache, local_files_only=local_only))
        except LocalEntryNotFoundError:
            # No connection: each further try would wait through huggingface_hub's retries (~20 s a file),
            # so look for the rest in the cache only and name everything missing at once.
            missing.append(f)
            local_only = True
            why = why or "could not be downloaded (no connection?) and {are} not in the Hugging Face cache"
        except (EntryNotFoundError, HfHubHTTPError) as exc:
            missing.append(f)
            why = why or f"could not be downloaded ({exc.__class__.__name__})"
    if missing:
        raise _missing_error(missing, why, cache)
    return found


def _missing_error(missing: list[ModelFile], why: str, where: str) -> UserError:
    """One error for every missing file: which, why, where looked, and the commands that fetch them."""
    names = ", ".join(str(f) for f in missing)
    by_repo: dict[str, list[str]] = {}
    for f in missing:
        by_repo.setdefault(f.repo_id, []).append(f.filename)
    commands = "; ".join(f"hf download {repo} {' '.join(filenames)}" for repo, filenames in by_repo.items())
    plural = len(missing) > 1
    return UserError(
        f"model file{'s' if plural else ''} {names} {why.replace('{are}', 'are' if plural else 'is')} ({where})",
        f"on a connected machine run `{commands}` (`huggingface-cli download …` with older huggingface_hub) "
        f"and copy its ~/.cache/huggingface/hub here, or put the files in a folder as REPO/FILE and set "
        f"{MODEL_DIR_ENV} to it; HF_HUB_OFFLINE=1 then keeps everything local")


def open_session(path: str | os.PathLike, device: str = "cpu"):
    """An onnxruntime session for the model at `path`: CPU unless device='cuda' and its provider is installed."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UserError("the anime models were asked to run on CUDA, but onnxruntime has no CUDA provider",
                            "pip install onnxruntime-gpu (instead of onnxruntime), or score on the CPU")
        providers.insert(0, "CUDAExecutionProvider")
    elif device != "cpu":
        raise UserError(f"unknown device {device!r} for the ONNX models", "use 'cpu' or 'cuda'")
    return ort.InferenceSession(str(path), providers=providers)


def input_size(session, default: int) -> int:
    """The square image size the model's first input is fixed to (NCHW or NHWC), else `default`."""
    shape = session.get_inputs()[0].shape
    sizes = [d for d in shape[1:] if isinstance(d, int) and d > 3]
    return sizes[0] if sizes else default


def batch_limit(session, default: int) -> int:
    """How many images one run may take: the model's fixed batch size if it has one (some exports fix 1)."""
    batch = session.get_inputs()[0].shape[0]
    return batch if isinstance(batch, int) and batch > 0 else default
