"""The one typed config: presets, --set overrides and validation a hobbyist can act on."""

import pytest

from lora_studio.config import TrainConfig, config_from_dict, load_config, parse_overrides, save_config
from lora_studio.errors import UserError
from lora_studio.presets import list_presets, load_preset, save_preset


def test_seed_recipe_preset_holds_the_write_ups_numbers():
    config = load_preset("seed-recipe")
    assert (config.repeats, config.batch_size, config.epochs) == (6, 1, 8)
    assert config.optimizer == "lion" and config.scheduler == "cosine_with_restarts"
    assert config.clip_skip == 2 and config.resolution == 512
    assert config.resolved_te_lr() == pytest.approx(config.unet_lr / 10)


def test_lr_probe_preset_is_one_dadaptation_epoch_at_lr_one():
    config = load_preset("lr-probe")
    assert config.optimizer == "dadapt_adam" and config.epochs == 1
    assert config.unet_lr == 1.0 and config.te_lr == 1.0


def test_set_overrides_one_field_and_keeps_the_rest():
    config = config_from_dict(parse_overrides(["batch_size=2", "unet_lr=3e-4"]), load_preset("seed-recipe"))
    assert config.batch_size == 2 and config.unet_lr == 3e-4 and config.repeats == 6


def test_unknown_field_is_refused_by_name():
    with pytest.raises(UserError, match="unknown field 'batch'"):
        config_from_dict({"batch": 2})


def test_bad_choice_names_the_field_and_the_allowed_values():
    with pytest.raises(UserError, match="'optimizer'.*lion, dadapt_adam, adamw, prodigy"):
        config_from_dict({"optimizer": "sgd"})


def test_out_of_range_and_wrong_type_are_refused():
    with pytest.raises(UserError, match="'batch_size' is 0"):
        config_from_dict({"batch_size": 0})
    with pytest.raises(UserError, match="'epochs' cannot be 'many'"):
        config_from_dict({"epochs": "many"})
    with pytest.raises(UserError, match="'epochs' cannot be 2.5"):
        config_from_dict({"epochs": 2.5})


def test_te_lr_left_empty_follows_unet_lr_over_the_divisor():
    config = config_from_dict({"unet_lr": "2e-4", "te_lr": "auto", "te_lr_divisor": 4})
    assert config.te_lr is None and config.resolved_te_lr() == pytest.approx(5e-5)


def test_config_round_trips_through_toml(tmp_path):
    config = TrainConfig(name="tibbie", sample_prompts=['1girl, "tibbie"', "sitting on tree"], batch_size=3)
    loaded = load_config(save_config(config, tmp_path / "job.toml"))
    assert loaded == config


def test_a_preset_from_a_newer_version_is_refused_not_half_applied(tmp_path):
    path = tmp_path / "future.toml"
    path.write_text("schema_version = 99\nbatch_size = 2\n")
    with pytest.raises(UserError, match="schema_version 99"):
        load_preset(str(path))


def test_saved_preset_is_sparse_and_shows_up_in_the_list(studio_home):
    config = config_from_dict({"batch_size": 2, "dataset": "/my/frames"}, load_preset("seed-recipe"))
    path = save_preset(config, "Tibbie bs2")
    text = path.read_text()
    assert "batch_size = 2" in text and "epochs" not in text and "/my/frames" not in text
    assert "Tibbie bs2" in list_presets()
    assert load_preset("Tibbie bs2").batch_size == 2


def test_a_run_names_its_preset_and_says_when_fields_were_edited():
    from lora_studio.presets import preset_label

    character = {"name": "tibbie", "trigger_word": "tibbie", "dataset": "/frames", "base_model": "toy"}
    applied = load_preset("seed-recipe", base=TrainConfig(**character))
    assert preset_label("seed-recipe", applied) == "seed-recipe"
    assert preset_label("seed-recipe", config_from_dict({"batch_size": 3}, applied)) == "seed-recipe (edited)"
    assert preset_label("no-such-preset", applied) == preset_label(None, applied) == ""
