"""Base models: loading real SD1.5 checkpoints and building tiny ones."""
