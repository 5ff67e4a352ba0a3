"""The per-frame checks: each finds what it names, says it in numbers, and leaves good frames alone."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from lora_studio.data import checks, outliers
from lora_studio.data.captions import split_tags
from lora_studio.data.frames import to_rgb
from lora_studio.toy.character import draw_character_frame


def toy_frames(n: int, size: int = 96) -> list[Image.Image]:
    """n frames of the toy character (different poses and backgrounds), crisp like clean anime frames."""
    return [draw_character_frame(seed, size=size).image for seed in range(n)]


def measured(images: dict[str, Image.Image], extractor=None) -> dict[str, checks.ImageFacts]:
    """Facts for in-memory frames, measured exactly as inspect_frame measures files."""
    facts = {}
    for fid, image in images.items():
        f = checks.ImageFacts(True, width=image.width, height=image.height, mode=image.mode)
        facts[fid] = checks.measure(f, image.convert("RGB"), extractor)
    return facts


def checks_of(flags: dict[str, list[checks.Flag]], fid: str) -> set[str]:
    return {f.check for f in flags.get(fid, [])}


def motion_blurred(image: Image.Image, length: int = 9) -> Image.Image:
    """Horizontal motion blur: the average of the frame shifted along x."""
    arr = np.asarray(image, dtype=np.float64)
    out = sum(np.roll(arr, shift, axis=1) for shift in range(-(length // 2), length // 2 + 1)) / length
    return Image.fromarray(out.astype(np.uint8))


def test_a_blurred_frame_is_flagged_against_the_sets_median_sharpness():
    frames = {f"f{i}": im for i, im in enumerate(toy_frames(10))}
    frames["soft"] = frames["f3"].filter(ImageFilter.GaussianBlur(3))

    flags = checks.quality_flags(measured(frames))

    assert checks_of(flags, "soft") == {"blur"}
    message = flags["soft"][0].message
    assert message.startswith("blurry: sharpness") and "the dataset median is" in message
    assert all("blur" not in checks_of(flags, f"f{i}") for i in range(10))


def test_motion_blur_is_named_as_such():
    frames = {f"f{i}": im for i, im in enumerate(toy_frames(10))}
    frames["action"] = motion_blurred(frames["f1"], 15)

    flags = checks.quality_flags(measured(frames))

    assert flags["action"][0].message.startswith("motion blur:")


def test_a_hazy_low_contrast_frame_is_not_called_blurry():
    frames = {f"f{i}": im for i, im in enumerate(toy_frames(10))}
    grey = Image.new("RGB", frames["f2"].size, (128, 128, 128))
    frames["haze"] = Image.blend(frames["f2"], grey, 0.6)  # same edges, a third of the contrast

    assert "blur" not in checks_of(checks.quality_flags(measured(frames)), "haze")


def test_a_very_dark_frame_is_flagged_but_a_set_of_night_scenes_is_not():
    day = {f"f{i}": im for i, im in enumerate(toy_frames(8))}
    day["black"] = Image.fromarray((np.asarray(day["f0"]) * 0.1).astype(np.uint8))
    daylight = [s.image for s in (draw_character_frame(i, size=96) for i in range(20)) if "night" not in s.tags]
    night = {f"n{i}": Image.fromarray((np.asarray(im) * 0.15).astype(np.uint8)) for i, im in enumerate(daylight)}

    assert "dark" in checks_of(checks.quality_flags(measured(day)), "black")
    assert not any(checks_of(checks.quality_flags(measured(night)), fid) & {"dark"} for fid in night)


def test_a_flat_frame_is_flagged_as_low_detail():
    frames = {f"f{i}": im for i, im in enumerate(toy_frames(8))}
    frames["fade"] = Image.new("RGB", (96, 96), (90, 140, 200))

    assert "low_detail" in checks_of(checks.quality_flags(measured(frames)), "fade")


def test_identical_pixels_are_duplicates_whatever_the_file_format(tmp_path):
    image = toy_frames(1)[0]
    image.save(tmp_path / "a.png")
    image.save(tmp_path / "b.bmp")
    draw_character_frame(5, size=96).image.save(tmp_path / "c.png")
    facts = {name: checks.inspect_frame(tmp_path / name) for name in ("a.png", "b.bmp", "c.png")}

    flags = checks.duplicate_flags(facts)

    assert [(f.check, f.other) for f in flags["b.bmp"]] == [("duplicate", "a.png")]
    assert [(f.check, f.other) for f in flags["a.png"]] == [("duplicate", "b.bmp")]
    assert "c.png" not in flags


def test_near_duplicates_name_each_other_and_survive_resizing_and_recompression():
    frames = {f"f{i}": im for i, im in enumerate(toy_frames(6))}
    noisy = np.asarray(frames["f4"], dtype=np.int16) + np.random.default_rng(0).integers(-6, 7, (96, 96, 3))
    frames["f4_again"] = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).resize((120, 120))

    flags = checks.duplicate_flags(measured(frames))

    near = [f for f in flags["f4_again"] if f.check == "near_duplicate"]
    assert near and near[0].other == "f4" and "near duplicate of f4" in near[0].message
    assert set(flags) == {"f4", "f4_again"}


def test_plain_frames_of_different_colours_are_not_near_duplicates():
    # pHash ignores overall level: without the brightness test a black and a white frame would "match".
    frames = {"black": Image.new("RGB", (64, 64)), "white": Image.new("RGB", (64, 64), (255, 255, 255))}

    assert checks.duplicate_flags(measured(frames)) == {}


def test_tiny_frames_are_refused_and_small_ones_warned_for_the_training_resolution():
    assert checks.size_flags(1, 1, 512)[0].severity == "error"
    small = checks.size_flags(200, 150, 512)[0]
    assert small.check == "too_small" and "upscaled 3.0×" in small.message
    assert checks.size_flags(512, 768, 512) == []


def test_an_extreme_aspect_ratio_says_how_much_is_cropped_and_a_lone_shape_is_noted():
    sizes = {f"f{i}": (512, 512) for i in range(5)}
    sizes["panorama"] = (100000, 10)
    sizes["wide"] = (768, 432)  # 16:9, no other frame shares its bucket

    flags = checks.aspect_flags(sizes, 512)

    assert "extreme aspect ratio 10000:1 (wide)" in flags["panorama"][0].message
    assert flags["wide"][0].severity == "note" and "alone" in flags["wide"][0].message
    assert not any(f"f{i}" in flags for i in range(5))


def test_caption_checks_find_missing_empty_untriggered_and_overlong_captions():
    from lora_studio.data.captions import count_clip_tokens
    from lora_studio.models.tiny import load_clip_tokenizer

    def found(caption, trigger="tibbie", tokens=None):
        return [f.check for f in checks.caption_flags(caption, split_tags(caption or ""), trigger, tokens)]

    long_caption = ", ".join(f"detail number {i}" for i in range(40))
    tokens = count_clip_tokens(long_caption, load_clip_tokenizer())

    assert found(None) == ["missing_caption"]
    assert found("  ") == ["empty_caption"]
    assert found("sheep, meadow") == ["no_trigger"]
    assert found("sheep, Tibbie") == ["trigger_not_first"]
    assert found("tibbie, sheep") == []
    assert tokens > 75 and found("tibbie, " + long_caption, tokens=tokens) == ["long_caption"]


def test_a_tag_on_only_one_frame_is_noted_but_the_trigger_word_is_not():
    tags = {f"f{i}": ["tibbie", "sheep", "meadow"] for i in range(5)}
    tags["f5"] = ["tibbie", "sheep", "meadwo"]
    tags["f6"] = ["tibbie", "sheep", "meadow"]

    flags = checks.rare_tag_flags(tags, "tibbie")

    assert list(flags) == ["f5"] and "'meadwo'" in flags["f5"][0].message


def test_the_odd_frame_out_is_the_outlier():
    frames = {f"f{i}": im for i, im in enumerate(toy_frames(16))}
    base = frames["f7"]
    frames["stretched"] = base.resize((96, 220)).crop((0, 60, 96, 156))  # body pulled to twice its height
    extractor = outliers.ImageStatsFeatures()

    flags = outliers.outlier_flags(measured(frames, extractor), extractor.blocks, extractor.block_names)

    assert "stretched" in flags
    assert "distorted action frame" in flags["stretched"][0].message
    assert len(flags) <= 3


def test_outlier_scores_compare_nearest_frames_with_typical_pairs():
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 1, (30, 8)), rng.normal(8, 1, (1, 8))])

    scores = outliers.outlier_scores(features)

    assert scores.argmax() == 30 and scores[30] > 2 * outliers.OUTLIER_THRESHOLD
    assert np.median(scores) < outliers.OUTLIER_THRESHOLD


def test_sixteen_bit_frames_are_scaled_not_clipped_to_white():
    arr = np.full((16, 16), 20000, dtype=np.uint16)

    rgb = to_rgb(Image.fromarray(arr))

    assert rgb.mode == "RGB" and abs(int(np.asarray(rgb)[0, 0, 0]) - round(20000 / 65535 * 255)) <= 1


@pytest.fixture
def one_torch_thread():
    """One intra-op thread: on a busy 2-core machine two threads spin-wait and a tiny VAE call takes seconds."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_the_base_models_vae_can_be_the_feature_extractor(tiny_model_dir, one_torch_thread):
    from lora_studio.models.load import load_base

    extractor = outliers.VaeFeatures(load_base(str(tiny_model_dir)).vae, size=64)
    frames = {f"f{i}": im for i, im in enumerate(toy_frames(9, size=64))}

    facts = measured(frames, extractor)
    scores = outliers.outlier_scores(np.stack([f.features for f in facts.values()]), extractor.blocks)

    # Random tiny weights say nothing about looks; this checks the plumbing (a real VAE is measured in
    # benchmarks/review.md).
    assert facts["f0"].features.shape == (4 * 4 * 4,)
    assert np.isfinite(scores).all() and len(scores) == 9


def test_a_downloaded_clip_vision_model_plugs_in_from_a_local_folder(tmp_path):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=16)
    CLIPVisionModelWithProjection(config).save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path / "clip")

    extractor = outliers.ClipImageFeatures(tmp_path / "clip")
    vector = extractor(toy_frames(1, size=64)[0])

    assert vector.shape == (16,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)


def test_a_photo_saved_on_its_side_is_measured_upright(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view", as phones write it
    Image.new("RGB", (80, 40), (200, 30, 30)).save(tmp_path / "phone.jpg", exif=exif)

    facts = checks.inspect_frame(tmp_path / "phone.jpg")

    assert (facts.width, facts.height) == (40, 80)
    assert facts.features is None and facts.sharpness is not None
