"""The XY tab's judgement: scores as cells finish, then the recommendation in words and the heatmaps.

Folded from the plot's `score` and `recommendation` events (ui/xy_progress.py feeds them here); the
heatmaps are the PNG the plot writes beside its grid (evaluate/heatmap.py), the badged grid its copy with
every cell's scores on it (evaluate/badges.py), offered for download beside the plain grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lora_studio import runfiles


@dataclass
class ScoreView:
    """What the tab knows of a plot's scores so far."""

    cells: dict = field(default_factory=dict)  # (x, y, z) → {fidelity, adherence, quality}
    fresh: int = 0  # scored now (the rest from the cache)
    recommendation: dict | None = None

    def feed(self, event: dict) -> None:
        """Fold a score or recommendation event."""
        if event.get("type") == runfiles.SCORE:
            self.cells[(event["x"], event["y"], event.get("z", 0))] = {
                k: event[k] for k in ("fidelity", "adherence", "quality")}
            self.fresh += not event["cached"]
        elif event.get("type") == runfiles.RECOMMENDATION:
            self.recommendation = event


def _mean(view: ScoreView, key: str) -> float:
    return sum(c[key] for c in view.cells.values()) / len(view.cells)


def scores_text(view: ScoreView, total: int) -> str:
    """'Recommended: epoch 6 at weight 0.7: …' when done, the running count and means before."""
    if view.recommendation:
        r = view.recommendation
        return (f"**Recommended:** {r['reason']}.  \nScores per cell (0–1) are in `{Path(r['path']).name}` "
                f"and its `.csv`, beside the grid; the heatmaps below average the cells of each epoch × weight.")
    if not view.cells:
        return ""
    cached = len(view.cells) - view.fresh
    return (f"Scored {len(view.cells)} / {total or len(view.cells)} cells ({cached} from the cache) · mean fidelity "
            f"{_mean(view, 'fidelity'):.2f} · adherence {_mean(view, 'adherence'):.2f} · quality "
            f"{_mean(view, 'quality'):.2f}")


def scored_grid(view: ScoreView, grid: str) -> str | None:
    """The grid with a score badge on every cell (xy_grid-NNNN-scored.png) of a finished, scored plot (None before)."""
    if not view.recommendation or not grid:
        return None
    path = runfiles.scores_badged(Path(grid))
    return str(path) if path.is_file() else None


def scores_image(view: ScoreView, grid: str) -> str | None:
    """The heatmaps PNG of a finished, scored grid (None before)."""
    if not view.recommendation or not grid:
        return None
    path = runfiles.scores_picture(Path(grid))
    return str(path) if path.is_file() else None
