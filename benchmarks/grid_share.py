"""Benchmark: drawing the demo's grids and their copies to post (no model; the cells are synthetic).

The demo plot is 8 epochs × 8 weights of 64 px cells; the batch-size sweep's combined sheet puts
four such grids side by side (Z = bs1…bs4). Measured: the size of the grid and sheet PNGs, the
smallest label text, and the share copies (cells enlarged to 256 px, nearest-neighbour) in pixels,
bytes and seconds.

    python benchmarks/grid_share.py

Prints one Markdown table; benchmarks/grid_share.md keeps the numbers.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

EPOCHS = [f"Epoch: {e}" for e in range(1, 9)]
WEIGHTS = [f"LoRA weight: {w}" for w in ("0", "0.3", "0.5", "0.6", "0.7", "0.8", "0.9", "1")]
RUNS = [f"Run: bs{b}" for b in range(1, 5)]
PARAMETERS = "tibbie, sheep\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1, Size: 64x64, Model: toy"


def main() -> None:
    """Time one grid and one four-run sheet, then their JPEG and WebP copies to post."""
    import numpy as np
    from PIL import Image

    from lora_studio.generate.grid import compose_sheet, draw_grid, share_copy, write_grids

    rng = np.random.default_rng(0)
    cells = {(x, y, z): Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1))
             for x in range(8) for y in range(8) for z in range(4)}
    print("| what | PNG px | smallest label font | copy | copy px | copy bytes | seconds |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for sheets, name in ((1, "8×8 grid, 64 px cells"), (4, "4-run sheet (Z = bs1…bs4)")):
            start = time.perf_counter()
            one = {k: v for k, v in cells.items() if k[2] < sheets}
            main_png, _, _ = write_grids(one, (8, 8, sheets), EPOCHS, WEIGHTS, RUNS[:sheets] if sheets > 1 else [""],
                                         (64, 64), Path(tmp), f"grid{sheets}", PARAMETERS)
            drawn = time.perf_counter() - start
            _, layout = draw_grid([[cells[(x, y, 0)] for x in range(8)] for y in range(8)], EPOCHS, WEIGHTS)
            if sheets > 1:
                grid = draw_grid([[cells[(x, y, 0)] for x in range(8)] for y in range(8)], EPOCHS, WEIGHTS)[0]
                _, layout = compose_sheet([grid] * sheets, RUNS, layouts=[layout] * sheets)
            smallest = min(label.font_size for label in layout.labels)
            size = Image.open(main_png).size
            for fmt in ("jpeg", "webp"):
                start = time.perf_counter()
                copy = share_copy(main_png, fmt)
                seconds = time.perf_counter() - start
                copy_size = Image.open(copy).size
                print(f"| {name} | {size[0]}×{size[1]} ({drawn:.2f} s) | {smallest} px | {fmt} | "
                      f"{copy_size[0]}×{copy_size[1]} | {copy.stat().st_size / 1e6:.1f} MB | {seconds:.2f} |")


if __name__ == "__main__":
    main()
