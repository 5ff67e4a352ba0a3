"""Scoring is an extra: when the scorer cannot start, the plot still makes its grid and says why."""

from xy_helpers import write_run

from lora_studio import runfiles


def test_a_scorer_that_cannot_load_costs_the_plot_nothing(tiny_model_dir, tmp_path):
    from lora_studio.config import XYPlotConfig
    from lora_studio.generate.xy_job import run_xy_plot
    from lora_studio.models.load import load_base
    run = write_run(tmp_path / "run", epochs=(1,))  # LoRA files but no job.toml: the dataset is unknown
    config = XYPlotConfig(base=str(tiny_model_dir), run=str(run), prompt="tibbie", x="seed=1", y="", steps=1, seed=1, size="32x32", score=True, scorer="toy", share="")
    events = []
    result = run_xy_plot(config, load_base(str(tiny_model_dir)), tmp_path / "plot", events.append, lambda: False)
    assert result["cells"] == 1 and not result["stopped"]
    (warning,) = [e for e in events if e["type"] == runfiles.WARNING]
    assert warning["message"].startswith("the cells are not scored:") and "job.toml" in warning["message"]
    assert not any(e["type"] == runfiles.SCORE for e in events)
