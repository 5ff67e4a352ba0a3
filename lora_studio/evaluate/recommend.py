"""The recommendation: which epoch at which weight, and why, in words.

Cells of the same run, epoch and weight (other prompts or seeds) are averaged; a cell whose quality
fails the scorer's gate counts as a miss (fidelity and adherence 0: a broken picture shows neither the
character nor the prompt), and a (run, epoch, weight) with no passing cell at all is never picked. Leaving
broken cells out instead would judge a weight on whichever of its pictures survived: in the demo study
one clean picture of four made its (run, epoch, weight) the recommendation.

For each epoch: the lowest weight at which the character is recognised, and the highest at which the
prompt's other tags still pass. The pick is the (epoch, weight) with the best F-β of fidelity and
adherence (β = 3 as cyberharem; a setting), ties going to the lower weight, then the earlier epoch. Weight 0 is the base model alone and is never
picked; it is scored so the grid shows what the LoRA adds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lora_studio.evaluate.scorer import Thresholds, f_beta
from lora_studio.generate.prompt import format_weight


@dataclass
class Group:
    """The averaged scores of one (run, epoch, weight)."""

    run: str
    epoch: int | None
    weight: float
    fidelity: float
    adherence: float
    quality: float
    cells: int
    asked: tuple[str, ...] = field(default_factory=tuple)

    def f(self, beta: float) -> float:
        """This group's F-β."""
        return f_beta(self.fidelity, self.adherence, beta)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def group_cells(cells: list[dict], thresholds: Thresholds) -> tuple[list[Group], int]:
    """Average the cells per (run, epoch, weight), a broken cell as a miss; also how many cells failed quality.

    Groups whose every cell failed quality are not returned.
    """
    buckets: dict[tuple, list[dict]] = {}
    failed = 0
    for c in cells:
        if c["quality"] < thresholds.quality:
            failed += 1
            c = {**c, "fidelity": 0.0, "adherence": 0.0, "broken": True}
        buckets.setdefault((c.get("run") or "", c.get("epoch"), float(c.get("weight") or 0.0)), []).append(c)
    groups = []
    for (run, epoch, weight), members in buckets.items():
        if all(m.get("broken") for m in members):
            continue
        asked = tuple(dict.fromkeys(t for m in members for t in m.get("asked", ())))
        groups.append(Group(run, epoch, weight, _mean([m["fidelity"] for m in members]),
                            _mean([m["adherence"] for m in members]), _mean([m["quality"] for m in members]),
                            len(members), asked))
    return groups, failed


def _asked_words(asked: tuple[str, ...]) -> str:
    if not asked:
        return "the rest of the prompt"
    words = ", ".join(f"'{t}'" for t in asked[:2])
    return words + (" …" if len(asked) > 2 else "")


def _where(g: Group) -> str:
    place = f"epoch {g.epoch}" if g.epoch is not None else "the LoRA"
    run = f"{g.run} " if g.run else ""
    return f"{run}{place} at weight {format_weight(g.weight)}"


def per_epoch(groups: list[Group], thresholds: Thresholds) -> list[dict]:
    """For each (run, epoch): the lowest recognised weight and the highest weight that still follows the prompt."""
    out = []
    keys = sorted({(g.run, g.epoch) for g in groups if g.weight > 0}, key=lambda k: (k[0], k[1] or 0))
    for run, epoch in keys:
        mine = sorted((g for g in groups if g.run == run and g.epoch == epoch and g.weight > 0), key=lambda g: g.weight)
        recognised = [g.weight for g in mine if g.fidelity >= thresholds.fidelity]
        adherent = [g.weight for g in mine if g.adherence >= thresholds.adherence]
        out.append({"run": run, "epoch": epoch, "recognised_from": min(recognised) if recognised else None,
                    "adherent_up_to": max(adherent) if adherent else None})
    return out


def recommend(cells: list[dict], thresholds: Thresholds, beta: float = 3.0) -> dict | None:
    """The recommended {run, epoch, weight, reason, f_beta, per_epoch} for scored cells; None without LoRA cells."""
    groups, failed = group_cells(cells, thresholds)
    candidates = [g for g in groups if g.weight > 0]
    if not candidates:
        if not any(float(c.get("weight") or 0) > 0 for c in cells):
            return None  # a grid without the LoRA on: nothing to choose from
        # every cell with the LoRA on failed the quality gate: saying so is the answer
        return {"run": "", "epoch": None, "weight": None, "f_beta": 0.0, "beta": beta, "per_epoch": [],
                "reason": f"nothing to recommend: all {failed} cells with the LoRA on look broken (quality below "
                          f"{thresholds.quality:g}); try an earlier epoch, a lower weight or a lower learning rate"}
    best = min(candidates, key=lambda g: (-round(g.f(beta), 6), g.weight, g.epoch or 0, g.run))
    epochs = per_epoch(groups, thresholds)
    mine = next(e for e in epochs if e["run"] == best.run and e["epoch"] == best.epoch)
    asked = _asked_words(best.asked)
    parts = []
    if mine["recognised_from"] is None:
        parts.append("the character is not recognised at any weight of this epoch (fidelity stays below "
                     f"{thresholds.fidelity:g}); this is the best compromise, not a good result")
    else:
        parts.append(f"the character is recognised from weight {format_weight(mine['recognised_from'])}")
    if mine["adherent_up_to"] is None:
        parts.append(f"{asked} is lost at every weight")
    else:
        parts.append(f"{asked} survives up to {format_weight(mine['adherent_up_to'])}")
    reason = f"{_where(best)}: " + "; ".join(parts)
    if failed:
        reason += f" ({failed} broken cell{'s' if failed != 1 else ''} counted as misses)"
    return {"run": best.run, "epoch": best.epoch, "weight": best.weight, "reason": reason,
            "f_beta": round(best.f(beta), 4), "beta": beta, "fidelity": round(best.fidelity, 4),
            "adherence": round(best.adherence, 4), "per_epoch": epochs}
