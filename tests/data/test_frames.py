"""Scanning a user's frame folder: repeats, captions, exclusions, and the bad files real folders hold."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from frame_helpers import draw_frame
from lora_studio.data.frames import open_rgb, scan_frames
from lora_studio.errors import UserError


def test_kohya_repeat_folders_set_how_often_each_frame_is_seen(tmp_path):
    (tmp_path / "6_tibbie").mkdir()
    (tmp_path / "2_background" / "beach").mkdir(parents=True)
    draw_frame(tmp_path / "6_tibbie" / "a.png", 1)
    draw_frame(tmp_path / "2_background" / "beach" / "b.jpg", 2)
    draw_frame(tmp_path / "c.png", 3)

    frames = {f.id: f for f in scan_frames(tmp_path, default_repeats=3).frames}

    assert frames["6_tibbie/a.png"].repeats == 6
    assert frames["2_background/beach/b.jpg"].repeats == 2  # nearest N_name folder above the image
    assert frames["c.png"].repeats == 3  # outside any N_name folder: the preset's repeats


def test_pointing_at_a_kohya_folder_itself_keeps_its_repeats(tmp_path):
    folder = tmp_path / "6_tibbie"
    folder.mkdir()
    draw_frame(folder / "a.png", 1)

    assert scan_frames(folder).frames[0].repeats == 6


def test_a_dated_folder_is_not_read_as_thousands_of_repeats(tmp_path):
    (tmp_path / "2024_05_trip").mkdir()
    draw_frame(tmp_path / "2024_05_trip" / "a.png", 1)

    assert scan_frames(tmp_path, default_repeats=6).frames[0].repeats == 6


def test_captions_come_from_the_text_file_beside_each_image(tmp_path):
    draw_frame(tmp_path / "a.png", 1, size=(40, 24))
    (tmp_path / "a.txt").write_bytes("\ufefftibbie, sheep\nwhite background\n".encode("utf-8"))
    draw_frame(tmp_path / "b.png", 2)  # no caption file

    frames = {f.id: f for f in scan_frames(tmp_path).frames}

    assert frames["a.png"].caption == "tibbie, sheep, white background"  # BOM gone, lines joined as tags
    assert frames["a.png"].caption_path == tmp_path / "a.txt"
    assert (frames["a.png"].width, frames["a.png"].height) == (40, 24)
    assert frames["b.png"].caption == "" and frames["b.png"].caption_path is None


def test_caption_extension_can_be_changed(tmp_path):
    draw_frame(tmp_path / "a.png", 1)
    (tmp_path / "a.txt").write_text("wrong")
    (tmp_path / "a.caption").write_text("tibbie")

    assert scan_frames(tmp_path, caption_extension=".caption").frames[0].caption == "tibbie"


def test_excluded_frames_are_not_returned(tmp_path):
    for i in range(3):
        draw_frame(tmp_path / f"f{i}.png", i)

    report = scan_frames(tmp_path, exclude={"f1.png"})

    assert [f.id for f in report.frames] == ["f0.png", "f2.png"]
    assert report.skipped == []  # a user's choice is not a problem to report


def test_bad_files_are_skipped_with_a_reason_while_the_rest_load(tmp_path):
    draw_frame(tmp_path / "good.png", 1)
    draw_frame(tmp_path / "good2.jpg", 2)
    (tmp_path / "random-bytes.png").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "caption-renamed.png").write_text("tibbie, sheep, white background")
    Image.new("RGB", (1, 1)).save(tmp_path / "spacer.png")
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buffer, "JPEG")
    (tmp_path / "half-copied.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    Image.new("RGB", (16, 16)).save(tmp_path / "anim.gif")
    (tmp_path / "notes.md").write_text("not an image, not reported")
    (tmp_path / "._good.png").write_bytes(b"macOS resource fork, ignored")

    report = scan_frames(tmp_path)

    assert [f.id for f in report.frames] == ["good.png", "good2.jpg"]
    reasons = dict(report.skipped)
    assert set(reasons) == {"random-bytes.png", "caption-renamed.png", "spacer.png", "half-copied.jpg", "anim.gif"}
    assert "not an image" in reasons["caption-renamed.png"]
    assert "not an image" in reasons["random-bytes.png"]
    assert "1x1" in reasons["spacer.png"]
    assert "truncated" in reasons["half-copied.jpg"]
    assert "convert" in reasons["anim.gif"]


def test_a_caption_that_is_not_utf8_skips_its_frame_with_a_reason(tmp_path):
    draw_frame(tmp_path / "a.png", 1)
    draw_frame(tmp_path / "b.png", 2)
    (tmp_path / "b.txt").write_bytes("喜羊羊, sheep".encode("gbk"))

    report = scan_frames(tmp_path)

    assert [f.id for f in report.frames] == ["a.png"]
    assert "UTF-8" in dict(report.skipped)["b.png"]


def test_images_of_every_common_kind_load_as_rgb(tmp_path):
    transparent = tmp_path / "transparent.png"
    Image.new("RGBA", (16, 16), (255, 0, 0, 0)).save(transparent)
    cmyk = tmp_path / "print.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(cmyk)
    deep = tmp_path / "deep.png"
    Image.new("I;16", (16, 16), 128 * 257).save(deep)
    animated = tmp_path / "anim.gif"
    Image.new("RGB", (16, 16), (255, 0, 0)).save(
        animated, save_all=True, append_images=[Image.new("RGB", (16, 16), (0, 0, 255))], duration=100)
    palette = tmp_path / "palette.png"
    Image.new("P", (16, 16), 0).save(palette, transparency=0)

    images = {p.name: open_rgb(p) for p in (transparent, cmyk, deep, animated, palette)}

    assert all(img.mode == "RGB" and img.size == (16, 16) for img in images.values())
    assert images["transparent.png"].getpixel((0, 0)) == (255, 255, 255)  # alpha flattened on white
    red, green, blue = images["print.jpg"].getpixel((8, 8))
    assert red > 200 and green < 60 and blue < 60
    assert images["deep.png"].getpixel((0, 0)) == (128, 128, 128)  # 16-bit scaled, not clipped to white
    assert images["anim.gif"].getpixel((0, 0)) == (255, 0, 0)  # first frame
    assert images["palette.png"].getpixel((0, 0)) == (255, 255, 255)


def test_a_phone_photo_reports_its_upright_size(tmp_path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    Image.new("RGB", (40, 20), (200, 10, 10)).save(path, exif=exif)

    frame = scan_frames(tmp_path).frames[0]

    assert (frame.width, frame.height) == (20, 40)
    assert open_rgb(path).size == (20, 40)


def test_a_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        scan_frames(tmp_path / "nope")


def test_a_folder_without_images_is_a_user_error(tmp_path):
    (tmp_path / "a.txt").write_text("tibbie")
    with pytest.raises(UserError, match="no images"):
        scan_frames(tmp_path)


def test_a_folder_of_only_bad_images_says_how_many_were_skipped_and_why(tmp_path):
    for i in range(4):
        (tmp_path / f"bad{i}.png").write_text("not a png")
    draw_frame(tmp_path / "good.png", 1)

    with pytest.raises(UserError) as err:
        scan_frames(tmp_path, exclude={"good.png"})

    assert "4 file(s) skipped" in err.value.message and "not an image" in err.value.message
    assert "1 excluded" in err.value.message
