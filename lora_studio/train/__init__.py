"""The LoRA training loop, its optimizers, the LR probe and the LoRA file format."""
