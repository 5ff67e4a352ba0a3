"""An XY plot of the demo LoRA with --score: every cell gets its scores as it finishes, and a recommendation."""

import json

from lora_studio import runfiles

PROMPT = "tibbie, sheep, pink bow, standing, meadow, <lora:tibbie-000001:0>"


def test_a_scored_plot_of_the_demo_lora_knows_her_at_weight_one_and_not_at_zero(demo_lora, tmp_path, capsys):
    from lora_studio.cli import main
    from lora_studio.config import XYPlotConfig
    from lora_studio.generate.xy_job import run_xy_plot
    from lora_studio.models.load import load_base
    from lora_studio.toy.proof import demo_config

    demo_config()  # this test's review state: the demo's distorted frames excluded, as the run was trained
    run, _lora, _ = demo_lora
    config = XYPlotConfig(base="toy", run=str(run), prompt=PROMPT, x="epoch=4,7", y="weight=0,0.6,1",
                          z="seed=1,2", size="64x64", cfg=5.0, score=True, share="")
    events = []
    out = tmp_path / "plot"
    result = run_xy_plot(config, load_base("toy"), out, events.append, lambda: False)

    scores = [e for e in events if e["type"] == runfiles.SCORE]
    assert len(scores) == result["cells"] == 12
    assert all(runfiles.event_problems(e) == [] for e in events)
    data = json.loads(runfiles.scores_file(result["grid"]).read_text())
    cell = {(c["epoch"], c["weight"], c["seed"]): c for c in data["cells"]}
    threshold = data["thresholds"]["fidelity"]
    assert all(cell[e, 0.0, s]["fidelity"] < threshold for e in (4, 7) for s in (1, 2))  # the base: never her
    # At weight 1 she is there in some seed of every epoch; the rate over seeds is the proof's to measure
    # (tests/toy/test_lora_proof.py: the demo recipe shows her at weight 1 in 5 of 6, not in every seed).
    assert all(max(cell[e, 1.0, s]["fidelity"] for s in (1, 2)) >= threshold for e in (4, 7))
    at = {w: sum(cell[e, w, s]["fidelity"] for e in (4, 7) for s in (1, 2)) / 4 for w in (0.0, 1.0)}
    assert at[1.0] > at[0.0] + 0.1, at
    (recommendation,) = [e for e in events if e["type"] == runfiles.RECOMMENDATION]
    assert recommendation["weight"] > 0 and recommendation["reason"] == data["recommendation"]["reason"]
    assert result["recommendation"] == recommendation["reason"]

    # scoring it again from the command line reads every cell's scores back from the cache
    assert main(["score", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "12 cells, 0 scored now, 12 from the cache" in printed
    assert recommendation["reason"] in printed
