"""Start a grid from an A1111 infotext: the write-up's three texts each become its 8×8 epoch × weight job."""

from __future__ import annotations

from pathlib import Path

import pytest

from lora_studio.errors import UserError
from lora_studio.generate.infotext import build_infotext, xyz_params
from lora_studio.generate.infotext_parse import parse_parameters, plot_from_infotext, run_mismatch
from lora_studio.generate.xy_plan import plan_cells, plan_from_config

from xy_helpers import write_run

SEED_TEXTS = [b for b in (Path(__file__).parent / "seed_infotexts.txt").read_text(encoding="utf-8").split("\n\n")
              if b.strip() and not b.startswith("#")]


@pytest.fixture(scope="module")
def tibbie1_run(tmp_path_factory) -> Path:
    """The write-up's run: Tibbie1-000001 … Tibbie1-000008.safetensors (tiny LoRA files)."""
    return write_run(tmp_path_factory.mktemp("Tibbie1"), name="Tibbie1", epochs=range(1, 9))


def test_each_of_the_write_ups_infotexts_becomes_an_8x8_grid_of_epoch_files_and_weights(tibbie1_run):
    assert len(SEED_TEXTS) == 3
    weights = [0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1]
    for text, seed in zip(SEED_TEXTS, (29464874, 487059718, 1680887032)):
        pasted = plot_from_infotext(text, base="toy", run=str(tibbie1_run))
        c = pasted.config
        # every setting A1111 used fills its field; Sampler + Schedule type is our one sampler name
        assert (c.steps, c.sampler, c.cfg, c.seed, c.size, c.clip_skip) == (20, "DPM++ 2M Karras", 7.0, seed,
                                                                             "512x512", 2)
        assert c.prompt.startswith("masterpiece, best quality") and "<lora:Tibbie1-000001:0>" in c.prompt
        assert c.negative.startswith("lowres, bad anatomy") and c.negative.endswith("disfigured, ugly")
        assert (c.x, c.y, c.z) == ("sr=01,02,03,04,05,06,07,08", "sr=:0,:0.3,:0.5,:0.6,:0.7,:0.8,:0.9,:1", "")
        # what the plot leaves out is said in one line, not dropped
        assert pasted.warning() == ("Not used from the pasted text: Model hash; Model (cuteyukimixAdorable_neochapter3); "
                                    "VAE hash; VAE (animevae.pt); Lora hashes; Version")

        grid = plan_cells(plan_from_config(c))
        # A1111's layout: X across (the S/R values as labels), Y down
        assert grid.shape == (8, 8, 1)
        assert grid.column_labels == ["01", "02", "03", "04", "05", "06", "07", "08"]
        assert grid.row_labels == [":0", ":0.3", ":0.5", ":0.6", ":0.7", ":0.8", ":0.9", ":1"]
        for cell in grid.cells:
            epoch, weight = cell.x + 1, weights[cell.y]
            # A1111 replaces X's '01', then Y's ':0', in the prompt: column N is file N, row the weight
            assert f"<lora:Tibbie1-{epoch:06d}:{weight:g}>" in cell.prompt, cell.prompt
            assert [(name, path, te) for name, path, te, _ in cell.loras] == [
                (f"Tibbie1-{epoch:06d}", tibbie1_run / f"Tibbie1-{epoch:06d}.safetensors", weight)]
            assert cell.loras[0][3] == weight and cell.seed == seed and cell.negative == c.negative
        assert not any(cell.active_loras() for cell in grid.cells if cell.y == 0)  # row ':0' is the base model


def test_a_run_whose_files_have_another_name_is_named_in_words(tmp_path):
    other = write_run(tmp_path / "tibbie", name="tibbie", epochs=(1, 2))
    pasted = plot_from_infotext(SEED_TEXTS[0], base="toy", run=str(other))
    said = run_mismatch(pasted.config.prompt, other)
    assert "`Tibbie1-000001` is not a file of the run `tibbie`" in said
    assert "`tibbie-000001` … `tibbie-000002`" in said and "<lora:tibbie-000001:…>" in said
    with pytest.raises(UserError, match="Tibbie1-000001"):
        plan_cells(plan_from_config(pasted.config))


def test_our_own_grid_text_and_older_a1111_texts_paste_back():
    # a grid of ours names its axes by our labels; an A1111 before 1.9 writes 'DPM++ 2M Karras' as one
    # sampler and no 'Clip skip' at 1
    params = {"Steps": 4, "Sampler": "DPM++ 2M Karras", "CFG scale": 5.5, "Seed": 3, "Size": "32x48",
              **xyz_params([("X", "Epoch", "1,2"), ("Y", "LoRA weight", "0,0.5,1"), ("Z", "Seed", "1,2")])}
    pasted = plot_from_infotext(build_infotext("tibbie, <lora:tibbie-000001:1>", "", params))
    c = pasted.config
    assert (c.x, c.y, c.z, c.sampler, c.clip_skip, c.cfg, c.size) == (
        "epoch=1,2", "weight=0,0.5,1", "seed=1,2", "DPM++ 2M Karras", 1, 5.5, "32x48")
    assert pasted.warning() == "" and c.negative == ""

    fields = parse_parameters("a, b\nc\nNegative prompt: x\ny\nSteps: 2, Seed: 1, Size: 8x8, Note: \"a, b: c\"")
    assert (fields["Prompt"], fields["Negative prompt"], fields["Note"]) == ("a, b\nc", "x\ny", "a, b: c")

    with pytest.raises(UserError, match="'Checkpoint name' is not an axis"):
        plot_from_infotext("a\nSteps: 2, Seed: 1, Size: 8x8, Script: X/Y/Z plot, X Type: Checkpoint name, "
                           "X Values: \"a.safetensors\"")


def test_xy_infotext_fills_the_command_and_a_flag_given_beside_it_wins(tibbie1_run, tmp_path, capsys):
    import argparse

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from lora_studio.generate.xy_cli import add_xy_parser, config_from_args, plan_from_args

    def args(*argv):
        parser = argparse.ArgumentParser(prog="lora-studio")
        add_xy_parser(parser.add_subparsers(dest="command", required=True))
        return parser.parse_args(["xy", "--base", "toy", "--run", str(tibbie1_run), "--output", "out", *argv])

    text_file = tmp_path / "parameters.txt"
    text_file.write_text(SEED_TEXTS[2], encoding="utf-8")
    notes = []
    config = config_from_args(args("--infotext", str(text_file), "--steps", "4"), notes)
    assert (config.steps, config.seed, config.share) == (4, 1680887032, "")  # the flag; the text; the CLI default
    assert notes == [plot_from_infotext(SEED_TEXTS[2]).warning()]
    assert "lying on beach" in config.prompt and config.x == "sr=01,02,03,04,05,06,07,08"

    # the PNG A1111 saved holds the same text
    png = tmp_path / "grid.png"
    info = PngInfo()
    info.add_text("parameters", SEED_TEXTS[0])
    Image.new("RGB", (8, 8)).save(png, pnginfo=info)
    assert plan_cells(plan_from_args(args("--infotext", str(png)))).shape == (8, 8, 1)

    with pytest.raises(UserError, match="--prompt is required"):
        config_from_args(args("--x", "epoch"))
    other = write_run(tmp_path / "bs2", name="tibbie", epochs=(1,))
    with pytest.raises(UserError, match="`Tibbie1-000001` is not a file of the run `bs2`"):
        config_from_args(args("--infotext", str(text_file), "--run", str(other)))
