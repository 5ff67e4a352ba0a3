"""LoRA Studio: train, watch and judge Stable Diffusion 1.5 character LoRAs on your own machine.

Importing this package does nothing heavy: no torch, no GPU, no disk, no threads.
"""

__version__ = "0.1.0"
