"""A tiny video of toy scenes, written with PyAV: cuts, a fade through black, repeated stretches."""

from __future__ import annotations

from pathlib import Path

from lora_studio.toy.scenes import draw_scene

FPS = 8


def _shot(seed: int, background: str, n: int, pan: int = 0):
    """n 64 px frames of one toy scene, the camera panning `pan` px a frame."""
    big = draw_scene(seed, size=80, background=background).image
    return [big.crop((i * pan, 8, i * pan + 64, 72)) for i in range(n)]


def write_toy_video(path: Path) -> list[str]:
    """Meadow | beach | the meadow again, fading to black | black | fade in to a panning sky | the beach again.

    Returns what each frame shows, so a kept frame's time tells its scene.
    """
    from PIL import Image

    meadow, beach, sky = _shot(1, "meadow", 12), _shot(2, "beach", 12), _shot(3, "sky", 12, pan=1)
    shown = [("meadow", f) for f in meadow] + [("beach", f) for f in beach] + [("meadow", f) for f in meadow[:8]]
    shown += [("fade", Image.eval(meadow[7], lambda v, k=k: int(v * (1 - k / 7)))) for k in range(1, 7)]
    shown += [("black", Image.new("RGB", (64, 64)))] * 4
    shown += [("fade", Image.eval(sky[0], lambda v, k=k: int(v * k / 7))) for k in range(1, 7)]
    shown += [("sky", f) for f in sky] + [("beach", f) for f in beach[2:10]]
    _encode(path, [image for _, image in shown])
    return [what for what, _ in shown]


def _encode(path: Path, images) -> None:
    import av

    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=FPS)  # in every FFmpeg build, unlike libx264
    stream.width = stream.height = 64
    stream.pix_fmt = "yuv420p"
    stream.options = {"qscale": "2"}
    for image in images:
        for packet in stream.encode(av.VideoFrame.from_image(image)):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def write_dissolve_video(path: Path) -> list[str]:
    """A panning meadow dissolving over a second into a panning night; returns what each frame shows."""
    from PIL import Image

    meadow, night = _shot(1, "meadow", 16, pan=1), _shot(3, "night", 16, pan=1)
    shown = [("meadow", f) for f in meadow]
    shown += [("dissolve", Image.blend(meadow[-1], night[0], k / 9)) for k in range(1, 9)]
    shown += [("night", f) for f in night]
    _encode(path, [image for _, image in shown])
    return [what for what, _ in shown]
