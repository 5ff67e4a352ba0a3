"""Load an SD1.5 diffusers model by hub id ('org/model'): downloaded once, then from the HF cache.

Only the files SD1.5 training needs are fetched (configs, tokenizer, safetensors weights), not the
pickles, fp16 variants, ONNX or Flax copies that many SD1.5 repos also hold. The configs come
first, so an SDXL or SD2 repo is refused before gigabytes of weights are downloaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from lora_studio.errors import UserError
from lora_studio.models.base import load_diffusers_folder

CONFIG_FILES = ["model_index.json", "scheduler/scheduler_config.json", "tokenizer/*",
                "unet/config.json", "vae/config.json", "text_encoder/config.json"]
# safetensors only: .bin weights are pickles, refused for the same reason as .ckpt files.
WEIGHT_FILES = ["unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                "text_encoder/model.safetensors"]
TRUE = {"1", "ON", "YES", "TRUE"}


def load_hub_model(repo_id: str, cache_dir: str | Path | None = None):
    """Load an SD1.5 diffusers repo from the hub cache (downloading it when online), as a BaseModel."""
    online = not hub_offline() and hub_reachable(repo_id)  # asked once: the two fetches below share it
    folder = fetch(repo_id, CONFIG_FILES, cache_dir, online=online)
    check_sd15_configs(folder, repo_id)
    folder = fetch(repo_id, CONFIG_FILES + WEIGHT_FILES, cache_dir, online=online)
    missing = [name for name in WEIGHT_FILES if not (folder / name).is_file()]
    if missing:
        raise UserError(f"{repo_id} has no {missing[0]} in the cache or on the hub",
                        "LoRA Studio loads safetensors weights only; pick a repo that has them, "
                        "or run once online if the download was interrupted")
    return load_diffusers_folder(folder, name=repo_id)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE read now, not at huggingface_hub's import (tests and the UI toggle it)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").upper() in TRUE or bool(constants.HF_HUB_OFFLINE)


def reach_timeout() -> float:
    """Seconds to wait for huggingface.co before falling back to the cache (HF_HUB_ETAG_TIMEOUT, default 10)."""
    return float(os.environ.get("HF_HUB_ETAG_TIMEOUT") or 10)


def hub_reachable(repo_id: str) -> bool:
    """False when huggingface.co cannot be reached in reach_timeout() seconds (no network, a dead proxy).

    snapshot_download's own first request has no timeout: behind a proxy or firewall that drops packets
    it waits for minutes and then fails with a bare transport error, so the studio asks once, briefly.
    """
    import httpx2  # huggingface_hub 2.x's HTTP client; its TransportError covers connect, read, proxy, timeout
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from huggingface_hub.errors import HFValidationError

    try:
        HfApi().repo_info(repo_id, timeout=reach_timeout())
    except httpx2.TransportError:
        return False
    except (HfHubHTTPError, HFValidationError):
        return True  # the hub answered (not found, gated, …) or the id is malformed: fetch() says what it means
    return True


def fetch(repo_id: str, patterns: list[str], cache_dir: str | Path | None = None, online: bool | None = None) -> Path:
    """The repo's snapshot folder holding `patterns`, downloaded if needed; hub failures become UserErrors.

    Without a network (or with HF_HUB_OFFLINE=1) it falls back to the Hugging Face cache; online, when
    given, is the caller's answer to "may it download?" (else it is asked here).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (GatedRepoError, HFValidationError, HfHubHTTPError,
                                        LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)

    switched_off = hub_offline()
    try:
        offline = not online if online is not None else switched_off or not hub_reachable(repo_id)
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=offline,
                                      cache_dir=cache_dir or os.environ.get("HF_HUB_CACHE") or None))
    except HFValidationError:
        raise UserError(f"'{repo_id}' is neither a model folder, a .safetensors file nor a hub id",
                        "check the spelling; hub ids look like 'stable-diffusion-v1-5/stable-diffusion-v1-5'") from None
    except GatedRepoError:
        raise UserError(f"{repo_id} is gated on the Hugging Face hub",
                        "accept its license on huggingface.co, then log in once with 'hf auth login'") from None
    except RepositoryNotFoundError:
        raise UserError(f"no model named {repo_id} on the Hugging Face hub (or it is private)",
                        "check the spelling, or log in with 'hf auth login' for a private repo") from None
    except RevisionNotFoundError as exc:
        raise UserError(f"{repo_id}: {exc}", "check the repo on huggingface.co") from None
    except LocalEntryNotFoundError:
        if switched_off:
            raise UserError(f"{repo_id} is not (fully) in the Hugging Face cache and hub downloads are switched "
                            "off (HF_HUB_OFFLINE=1)",
                            "unset HF_HUB_OFFLINE and run once with the network on to download it, or give a "
                            "local diffusers folder or .safetensors file") from None
        raise UserError(f"cannot reach huggingface.co to download {repo_id}, and it is not (fully) in the Hugging "
                        "Face cache yet",
                        "connect to the internet and start again (it is downloaded once, then used offline), "
                        "or give a local diffusers folder or .safetensors file") from None
    except HfHubHTTPError as exc:
        raise UserError(f"the Hugging Face hub refused {repo_id}: {str(exc).splitlines()[0]}",
                        "try again later, or give a local folder or .safetensors file") from None


def check_sd15_configs(folder: Path, repo_id: str) -> None:
    """Refuse non-SD1.5 repos from their small config files, before the weights are fetched."""
    index_file = folder / "model_index.json"
    if not index_file.is_file():
        raise UserError(f"{repo_id} is not a diffusers pipeline repo (no model_index.json)",
                        "if it holds one .safetensors checkpoint, download that file and give its path")
    pipeline = json.loads(index_file.read_text()).get("_class_name", "")
    if "XL" in pipeline:
        raise UserError(f"{repo_id} is an SDXL model; LoRA Studio trains SD1.5 LoRAs", "pick an SD1.5 model")
    if pipeline != "StableDiffusionPipeline":
        raise UserError(f"{repo_id} is a {pipeline or 'non-Stable-Diffusion'} repo, not an SD1.5 text-to-image model",
                        "pick an SD1.5 model such as stable-diffusion-v1-5/stable-diffusion-v1-5")
    for part in ("unet", "vae", "text_encoder", "scheduler", "tokenizer"):
        if not (folder / part).is_dir():
            raise UserError(f"{repo_id} has no '{part}/' folder", "pick a complete SD1.5 diffusers repo")
    text = json.loads((folder / "text_encoder" / "config.json").read_text())
    if text.get("hidden_act") != "quick_gelu":
        raise UserError(f"{repo_id} is an SD2.x model (OpenCLIP text encoder); LoRA Studio trains SD1.5 LoRAs",
                        "pick an SD1.5 model")
