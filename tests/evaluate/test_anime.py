"""The `anime` scorer and the WD14 tagger on tiny ONNX models the tests build (tiny_onnx.py).

These prove loading, pre-processing, thresholds and wiring, not the real models' quality.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tiny_onnx import CCIP_THRESHOLD, as_hub_cache, build_model_dir

RED, BLUE, GREEN = (230, 20, 20), (20, 20, 230), (20, 230, 20)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """The seven tiny model files, laid out as REPO/FILE (what LORA_STUDIO_ONNX_DIR points to)."""
    return build_model_dir(tmp_path_factory.mktemp("onnx-models"))


@pytest.fixture
def offline_empty_cache(tmp_path, monkeypatch):
    """No connection and an empty Hugging Face cache: what a fresh offline machine has."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("LORA_STUDIO_ONNX_DIR", raising=False)
    return tmp_path / "hf-home"


def _image(colour, size=(96, 96)):
    return Image.new("RGB", size, colour)


def test_the_tagger_reads_colours_in_bgr_and_tags_use_spaces_except_emoticons(model_dir):
    from lora_studio.evaluate.wd14 import WD14Tagger

    tagger = WD14Tagger(model_dir=model_dir)
    blue, red = tagger.tag_probabilities([_image(BLUE), _image(RED)])
    # The model reads channel 0 as blue: if the tagger fed it RGB, these two would swap.
    assert blue["blue theme"] > 0.99 and blue["red theme"] < 0.01
    assert red["red theme"] > 0.99 and red["blue theme"] < 0.01
    assert set(blue) == {"general", "blue theme", "red theme", "white background", "tibbie (toy)", "^_^"}
    assert tagger.tag_categories["tibbie (toy)"] == "character" and tagger.tag_categories["general"] == "rating"
    assert tagger.tag_categories["blue theme"] == "general"


def test_a_wide_frame_is_padded_white_to_a_square_before_tagging(model_dir):
    from lora_studio.evaluate.wd14 import WD14Tagger, wd14_input

    tagger = WD14Tagger(model_dir=model_dir)
    assert wd14_input(_image(BLUE, (400, 100)), 448).shape == (448, 448, 3)
    # 400×100 on a 400×400 white square: three quarters white (a stretch or black padding gives none).
    wide, = tagger.tag_probabilities([_image(BLUE, (400, 100))])
    assert wide["white background"] == pytest.approx(0.75, abs=0.02)
    transparent, = tagger.tag_probabilities([Image.new("RGBA", (64, 64), (0, 0, 0, 0))])
    assert transparent["white background"] == pytest.approx(1.0)


def test_a_character_tag_needs_the_character_threshold_a_general_tag_the_general_one(model_dir):
    from lora_studio.evaluate.wd14 import WD14Tagger

    tagger = WD14Tagger(model_dir=model_dir)
    assert (tagger.general_threshold, tagger.character_threshold) == (0.35, 0.85)
    half_green, = tagger.tag_probabilities([_image((20, 150, 20))])
    p = half_green["tibbie (toy)"]
    assert tagger.general_threshold < p < tagger.character_threshold  # would pass as a general tag, not as her
    assert tagger.tag_thresholds["tibbie (toy)"] == 0.85 and tagger.tag_thresholds["red theme"] == 0.35


def test_the_anime_scorer_judges_the_character_the_asked_tags_and_broken_images(model_dir):
    from lora_studio.evaluate.scorer import ScoreRequest
    from lora_studio.evaluate.scorers import load_scorer

    scorer = load_scorer("anime", model_dir=model_dir)
    assert scorer.name == "anime" and scorer.ccip_threshold == CCIP_THRESHOLD
    assert scorer.thresholds.fidelity == 0.5 and scorer.thresholds.adherence == 0.35
    # Her kept frames: three red, one blue.
    reference = scorer.reference([_image(RED), _image(RED, (64, 80)), _image(RED), _image(BLUE)])
    assert reference.shape == (4, 768)
    asked = ScoreRequest(asked_tags=("red_theme", "sitting on tree"))
    red, blue, green = scorer.score([_image(RED), _image(BLUE), _image(GREEN)], [asked] * 3, reference)
    assert red.fidelity == pytest.approx(0.75) and blue.fidelity == pytest.approx(0.25) and green.fidelity == 0
    assert red.adherence > 0.99 and blue.adherence < 0.01  # only `red theme` is judged …
    assert red.unjudged == ("sitting on tree",)  # … the tagger does not know the other
    assert red.quality > 0.99 and green.quality < 0.01  # the stand-in classifier calls green corrupted
    assert scorer.score([_image(RED)], [ScoreRequest()], reference)[0].adherence == 1.0


def test_the_preprocessing_matches_imgutils_for_ccip_and_the_corrupt_classifier():
    from lora_studio.evaluate.anime import CLIP_MEAN, CLIP_STD, ccip_input, corrupt_input

    x = ccip_input(_image((255, 0, 0), (50, 70)), 384)
    assert x.shape == (3, 384, 384)  # squashed, not padded; RGB; CHW
    assert np.allclose(x[:, 0, 0], (np.array([1.0, 0.0, 0.0]) - CLIP_MEAN) / CLIP_STD, atol=1e-5)
    y = corrupt_input(_image((255, 0, 0)), 384)
    assert y.shape == (3, 384, 384) and np.allclose(y[:, 5, 5], [1.0, -1.0, -1.0])


def test_models_found_in_the_hugging_face_cache_load_offline(model_dir, offline_empty_cache):
    from lora_studio.evaluate.wd14 import DEFAULT_TAGGER_REPO, WD14Tagger

    as_hub_cache(model_dir, DEFAULT_TAGGER_REPO, offline_empty_cache)
    probs, = WD14Tagger().tag_probabilities([_image(RED)])
    assert probs["red theme"] > 0.99


def test_offline_without_the_models_is_one_error_naming_every_file_and_how_to_get_it(offline_empty_cache):
    from lora_studio.errors import UserError
    from lora_studio.evaluate.scorers import load_scorer

    with pytest.raises(UserError) as caught:
        load_scorer("anime")
    message = str(caught.value)
    assert "\n" not in message
    for name in ("deepghs/ccip_onnx/ccip-caformer-24-randaug-pruned/model_feat.onnx",
                 "deepghs/ccip_onnx/ccip-caformer-24-randaug-pruned/metrics.json",
                 "SmilingWolf/wd-swinv2-tagger-v3/model.onnx", "SmilingWolf/wd-swinv2-tagger-v3/selected_tags.csv",
                 "deepghs/ai_image_corrupted/caformer_s36_v0_focal/model.onnx"):
        assert name in caught.value.message
    assert "HF_HUB_OFFLINE" in caught.value.message
    assert "hf download SmilingWolf/wd-swinv2-tagger-v3 model.onnx selected_tags.csv" in caught.value.hint
    assert "LORA_STUDIO_ONNX_DIR" in caught.value.hint


def test_a_model_folder_missing_a_file_says_which_and_where(tmp_path, monkeypatch):
    from lora_studio.errors import UserError
    from lora_studio.evaluate.wd14 import WD14Tagger

    (tmp_path / "SmilingWolf" / "wd-swinv2-tagger-v3").mkdir(parents=True)
    monkeypatch.setenv("LORA_STUDIO_ONNX_DIR", str(tmp_path))
    with pytest.raises(UserError, match=r"SmilingWolf/wd-swinv2-tagger-v3/model.onnx.*not in the model folder"):
        WD14Tagger()


def test_importing_the_scorers_and_the_anime_module_does_not_load_onnxruntime():
    code = ("import sys, lora_studio.evaluate.scorers, lora_studio.evaluate.anime; "
            "sys.exit('onnxruntime' in sys.modules or 'huggingface_hub' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
