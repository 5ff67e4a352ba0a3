"""The validation loss: the held-out frames' denoising loss at fixed timesteps with fixed noise.

The training loss jumps with the random timestep of each step, so its curve says little about an
epoch; sd-scripts added a validation loss for this (PR #1903). Here every evaluation sees the same
latents, timesteps and noise, with no caption shuffling or dropout, the LoRA at weight 1 and no
gradients: the same LoRA gives the same number, and two epochs' numbers compare.
"""

from __future__ import annotations

VALIDATION_TIMESTEPS = (200, 400, 600, 800)


class ValidationSet:
    """The held-out frames as the loss needs them: cached latents, full captions, fixed noise per timestep."""

    def __init__(self, items: list, *, seed: int, num_train_timesteps: int, timesteps=VALIDATION_TIMESTEPS):
        import torch

        from lora_studio.data.captions import join_tags

        self.items = items
        self.captions = [join_tags(item.tags) for item in items]
        self.timesteps = torch.tensor([min(int(t), num_train_timesteps - 1) for t in timesteps])
        # One generator for the whole set, drawn in a fixed order: the noise depends only on the seed and the frames.
        gen = torch.Generator().manual_seed(seed * 1_000_003 + 7_919)
        self.noise = [torch.randn((len(self.timesteps), *item.latent.shape), generator=gen) for item in items]

    def __len__(self) -> int:
        return len(self.items)

    def loss(self, unet, embed, noise_scheduler, autocast) -> float:
        """The mean MSE over every held-out frame × timestep; embed(captions) gives the encoder hidden states.

        unet is the bare module (not the DDP wrapper: its forward would wait for the other processes).
        """
        import torch
        import torch.nn.functional as F

        was_training = unet.training
        unet.eval()
        total, count = 0.0, 0
        try:
            with torch.no_grad():
                for item, caption, noise in zip(self.items, self.captions, self.noise):
                    device = item.latent.device
                    latents = item.latent.unsqueeze(0).expand(len(self.timesteps), *item.latent.shape)
                    noise = noise.to(device)
                    timesteps = self.timesteps.to(device)
                    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
                    with autocast():
                        hidden = embed([caption] * len(self.timesteps))
                        pred = unet(noisy, timesteps, hidden).sample
                    target = noise if noise_scheduler.config.prediction_type == "epsilon" else \
                        noise_scheduler.get_velocity(latents, noise, timesteps)
                    total += float(F.mse_loss(pred.float(), target.float(), reduction="sum")) / pred[0].numel()
                    count += len(self.timesteps)
        finally:
            unet.train(was_training)
        return total / count
