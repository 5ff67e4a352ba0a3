"""The toy world: procedural scenes, a character the base model never saw, a tiny pretrained model."""
