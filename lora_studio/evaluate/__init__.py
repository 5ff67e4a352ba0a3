"""Scores for generated images."""
