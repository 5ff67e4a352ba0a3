"""Sampling with LoRAs, A1111 prompt syntax, XY plots and labelled grids."""
