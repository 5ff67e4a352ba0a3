"""Sampling with adapters: A1111 sampler names → diffusers schedulers, A1111 prompt embeddings, seeds.

Prompt embeddings are always computed here and handed to diffusers as `prompt_embeds`: diffusers'
own `clip_skip=` reaches for `text_encoder.text_model`, which transformers 5 removed, and it knows
neither A1111's attention weights nor its 75-token chunks.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

from lora_studio.errors import UserError
from lora_studio.generate.prompt import empty_chunk, prompt_chunks, split_lora_tags

# A1111 sampler → (diffusers scheduler class, extra config, schedule types it takes). Mapping from
# the diffusers docs' scheduler overview ("A1111/k-diffusion → Diffusers"); the schedule types are
# those whose use_*_sigmas flags the class's __init__ has in diffusers 0.42.
SIGMA_SCHEDULES = ("Karras", "Exponential")
SAMPLERS = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}, ()),
    "Euler": ("EulerDiscreteScheduler", {}, SIGMA_SCHEDULES),
    "LMS": ("LMSDiscreteScheduler", {}, SIGMA_SCHEDULES),
    "Heun": ("HeunDiscreteScheduler", {}, SIGMA_SCHEDULES),
    "DPM2": ("KDPM2DiscreteScheduler", {}, SIGMA_SCHEDULES),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}, SIGMA_SCHEDULES),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}, SIGMA_SCHEDULES),
    "DPM++ SDE": ("DPMSolverSDEScheduler", {}, SIGMA_SCHEDULES),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, SIGMA_SCHEDULES),
    "DDIM": ("DDIMScheduler", {}, ()),
    "UniPC": ("UniPCMultistepScheduler", {}, SIGMA_SCHEDULES),
}
# A1111 1.9 splits "DPM++ 2M Karras" into Sampler "DPM++ 2M" and Schedule type "Karras".
SCHEDULE_TYPES = {
    "Automatic": {},
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
}
# k-diffusion samplers in A1111 space their sigmas evenly over all 1000 timesteps ("linspace");
# DDIM and UniPC keep the model's own spacing.
K_DIFFUSION = {"Euler a", "Euler", "LMS", "Heun", "DPM2", "DPM2 a", "DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE"}


def sampler_names() -> list[str]:
    """Every sampler name the studio accepts, A1111 spelling ('DPM++ 2M Karras' …)."""
    return [name for sampler, (_, _, schedules) in SAMPLERS.items()
            for name in [sampler] + [f"{sampler} {s}" for s in schedules]]


def parse_sampler(name: str) -> tuple[str, str]:
    """'DPM++ 2M Karras' → ('DPM++ 2M', 'Karras'); 'Euler a' → ('Euler a', 'Automatic')."""
    wanted = " ".join(name.split()).lower()
    for sampler in sorted(SAMPLERS, key=len, reverse=True):
        if wanted == sampler.lower():
            return sampler, "Automatic"
        for schedule in SCHEDULE_TYPES:
            if wanted == f"{sampler} {schedule}".lower():
                if schedule != "Automatic" and schedule not in SAMPLERS[sampler][2]:
                    raise UserError(f"the {schedule} schedule is not available for {sampler}",
                                    "pick another sampler, e.g. DPM++ 2M Karras")
                return sampler, schedule
    raise UserError(f"unknown sampler {name!r}", "use an A1111 name: " + ", ".join(sampler_names()))


def make_scheduler(sampler: str, scheduler_config: dict, seeds: list[int] | int = 0):
    """A fresh diffusers scheduler for an A1111 sampler name, from the model's scheduler config."""
    import diffusers
    from diffusers.utils import is_torchsde_available

    name, schedule = parse_sampler(sampler)
    cls_name, extra, _ = SAMPLERS[name]
    extra = {**extra, **SCHEDULE_TYPES[schedule]}
    if cls_name == "DPMSolverSDEScheduler" and not is_torchsde_available():
        raise UserError(f"{sampler} needs the 'torchsde' package, which is not installed",
                        "pip install torchsde, or pick DPM++ 2M SDE Karras (no extra package)")
    if name in K_DIFFUSION:
        extra["timestep_spacing"] = "linspace"
    scheduler = getattr(diffusers, cls_name).from_config(scheduler_config, **extra)
    if cls_name == "DPMSolverSDEScheduler":
        # Its Brownian tree draws from its own seed, not the generator; A1111 seeds it with the image
        # seed. A list gives each image of a batch its own tree.
        scheduler.noise_sampler_seed = seeds if isinstance(seeds, list) and len(seeds) > 1 else (
            seeds[0] if isinstance(seeds, list) else seeds)
    return scheduler


def encode_prompts(text_encoder, tokenizer, texts: list[str], clip_skip: int = 1):
    """A1111 conditioning for each text: 77-token chunks, attention weights, clip skip → [B, 77·n, dim].

    Every text is padded with empty-prompt chunks to the same length, as A1111
    does within a batch. Weights scale the hidden states and the mean is then restored (A1111's
    "Original" emphasis), per prompt so that batching never changes an image.
    """
    import torch

    from lora_studio.models.text import hidden_states_with_clip_skip

    per_text = [prompt_chunks(tokenizer, split_lora_tags(t)[0]) for t in texts]
    count = max(len(c) for c in per_text)
    blank = empty_chunk(tokenizer)
    device = text_encoder.device
    parts = []
    for i in range(count):
        batch = [c[i] if i < len(c) else blank for c in per_text]
        ids = torch.tensor([b.tokens for b in batch], device=device)
        weights = torch.tensor([b.weights for b in batch], device=device)
        hidden = hidden_states_with_clip_skip(text_encoder, ids, clip_skip).float()
        if not bool((weights == 1.0).all()):
            mean_before = hidden.mean(dim=(1, 2), keepdim=True)
            hidden = hidden * weights[..., None]
            mean_after = hidden.mean(dim=(1, 2), keepdim=True)
            # A1111 divides unguarded; a text encoder whose states average ~0 (a final layer norm
            # without bias, as in untrained tiny models) would turn that into inf/NaN.
            scale = hidden.abs().mean(dim=(1, 2), keepdim=True)
            usable = (mean_before.abs() > 1e-3 * scale) & (mean_after.abs() > 1e-3 * scale)
            hidden = torch.where(usable, hidden * (mean_before / mean_after), hidden)
        parts.append(hidden)
    return torch.cat(parts, dim=1)


def conditioning(base, prompts: list[str], negatives: list[str], clip_skip: int):
    """(cond, uncond) for a batch; both get the same chunk count, as diffusers needs equal shapes."""
    import torch

    with torch.no_grad():
        both = encode_prompts(base.text_encoder, base.tokenizer, list(prompts) + list(negatives), clip_skip)
    return both[: len(prompts)], both[len(prompts):]


def initial_latents(seeds: list[int], channels: int, height: int, width: int):
    """Start noise drawn on the CPU from each seed: the same image on any device, like A1111's CPU RNG."""
    import torch

    generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    latents = torch.cat([torch.randn((1, channels, height, width), generator=g) for g in generators])
    return latents, generators


def check_size(base, width: int, height: int) -> None:
    """Width and height must be multiples of the VAE factor (8 for SD1.5)."""
    factor = base.vae_scale_factor
    if width % factor or height % factor or width <= 0 or height <= 0:
        raise UserError(f"size {width}x{height} is not a multiple of {factor}", f"use e.g. 512x512 or {factor * 4}x{factor * 4}")


def sample(pipe, base, prompts: list[str], negatives: list[str], seeds: list[int], *, sampler: str,
           steps: int, cfg: float, width: int, height: int, clip_skip: int) -> list:
    """Render one batch (same sampler/steps/CFG/size and LoRA state) with a prepared pipeline."""
    import torch

    check_size(base, width, height)
    cond, uncond = conditioning(base, prompts, negatives, clip_skip)
    unet = base.unet
    factor = base.vae_scale_factor
    latents, generators = initial_latents(seeds, unet.config.in_channels, height // factor, width // factor)
    pipe.scheduler = make_scheduler(sampler, base.scheduler_config, list(seeds))
    dtype = unet.dtype
    with torch.no_grad():
        out = pipe(prompt_embeds=cond.to(dtype), negative_prompt_embeds=uncond.to(dtype),
                   height=height, width=width, num_inference_steps=steps, guidance_scale=cfg,
                   latents=latents.to(unet.device, dtype),
                   generator=generators if len(generators) > 1 else generators[0], output_type="pil")
    return out.images


def _eval_mode(modules):
    """Put modules in eval mode; return a function that restores every submodule's previous mode."""
    saved = [(m, m.training) for module in modules if module is not None for m in module.modules()]
    for module in modules:
        if module is not None:
            module.eval()

    def restore() -> None:
        for m, training in saved:
            m.training = training

    return restore


def render(base, prompt: str, negative: str = "", *, sampler: str = "DPM++ 2M Karras", steps: int = 20,
           cfg: float = 7.0, width: int = 512, height: int = 512, seed: int = 0, clip_skip: int = 2):
    """One image with whatever LoRA adapters are active on base's modules now (training previews).

    `<lora:…>` tags are removed from the prompt and do not switch adapters here; the XY plot does that.
    """
    pipe = base.pipeline()
    pipe.set_progress_bar_config(disable=True)
    restore = _eval_mode([base.unet, base.text_encoder, base.vae])
    try:
        return sample(pipe, base, [prompt], [negative], [seed], sampler=sampler, steps=steps, cfg=cfg,
                      width=width, height=height, clip_skip=clip_skip)[0]
    finally:
        restore()


@contextlib.contextmanager
def _quiet_adapter_loading():
    # transformers 5.23 reports the *other* adapters' keys as "MISSING … newly initialized" when a
    # second adapter is loaded into the text encoder (checked: their weights are untouched), and peft
    # warns that several adapters exist, which is the point here.
    peft_logger = logging.getLogger("transformers.integrations.peft")
    level = peft_logger.level
    peft_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            yield
    finally:
        peft_logger.setLevel(level)


class LoraRenderer:
    """A pipeline over a base model whose LoRA files are each loaded once and switched by weight.

    Adapters are added to base's own modules; close() deletes them so the base is clean again.
    """

    def __init__(self, base):
        self.base = base
        self.pipe = base.pipeline()
        self.pipe.set_progress_bar_config(disable=True)
        self.adapters: dict[Path, str] = {}
        self.loads = 0
        self._restore = _eval_mode([base.unet, base.text_encoder, base.vae])

    def adapter(self, path: Path) -> str:
        """The adapter name of a LoRA file, loading the file the first time only."""
        path = Path(path).resolve()
        if path not in self.adapters:
            name = f"xy{len(self.adapters)}"
            try:
                with _quiet_adapter_loading():
                    self.pipe.load_lora_weights(str(path), adapter_name=name)
            except (ValueError, KeyError, OSError) as exc:
                raise UserError(f"cannot load the LoRA {path.name}: {exc}",
                                "is it an SD1.5 LoRA in kohya/A1111 or diffusers format?") from None
            self.adapters[path] = name
            self.loads += 1
        return self.adapters[path]

    def use(self, loras: list[tuple[Path, float, float]]) -> None:
        """Activate exactly these (file, te weight, unet weight); an empty list is the bare base model."""
        combined: dict[str, list[float]] = {}
        for path, te, un in loras:
            if te or un:
                # the same LoRA tagged twice adds up, as A1111 applies both
                weights = combined.setdefault(self.adapter(path), [0.0, 0.0])
                weights[0] += te
                weights[1] += un
        active = [(name, te, un) for name, (te, un) in combined.items()]
        if not active:
            if self.adapters:
                # disabled adapters are skipped entirely: the output is the base model's, bit for bit
                self.pipe.disable_lora()
            return
        self.pipe.enable_lora()
        names = [name for name, _, _ in active]
        weights = [{"unet": un, "text_encoder": te} for _, te, un in active]
        present = self.pipe.get_list_adapters()
        for weight, name in zip(weights, names):
            for part in list(weight):
                if name not in present.get(part, []):
                    del weight[part]  # a LoRA without text-encoder layers: nothing to weight there
        self.pipe.set_adapters(names, weights)

    def images(self, loras, prompts, negatives, seeds, **settings) -> list:
        """Render a batch under one LoRA state (see sample() for settings)."""
        self.use(loras)
        return sample(self.pipe, self.base, prompts, negatives, seeds, **settings)

    def close(self) -> None:
        """Delete every adapter this renderer loaded and restore the modules' train/eval modes."""
        if self.adapters:
            self.pipe.enable_lora()
            self.pipe.delete_adapters(list(self.adapters.values()))
            self.adapters.clear()
        self._restore()

    def __enter__(self) -> "LoraRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
