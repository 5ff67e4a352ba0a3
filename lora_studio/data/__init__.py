"""Frames, captions, review and the training dataset."""
