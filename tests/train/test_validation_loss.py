"""The validation loss: frames held out whole, the same number for the same LoRA, lower once the LoRA learned."""

import dataclasses

import pytest

from lora_studio import runfiles
from lora_studio.data.run_frames import held_out_count, split_validation
from lora_studio.errors import UserError
from lora_studio.train.lora_file import read_metadata
from lora_studio.train.loop import train


@pytest.fixture
def demo_with_validation(tmp_path, monkeypatch):
    """The demo preset on the demo frames, 2 short epochs, 4 kept frames held out."""
    monkeypatch.setenv("LORA_STUDIO_HOME", str(tmp_path / "home"))
    from lora_studio.toy.proof import demo_config

    return dataclasses.replace(demo_config(), epochs=2, repeats=1, validation_split=4.0)


def _validation(events):
    return {e["epoch"]: e["loss"] for e in events if e["type"] == runfiles.VALIDATION}


def test_held_out_frames_are_never_trained_and_the_loss_falls_as_the_lora_learns(demo_with_validation, tmp_path):
    config = demo_with_validation
    events = []
    train(config, tmp_path / "run", events.append)
    started = next(e for e in events if e["type"] == runfiles.STARTED)
    kept = started["frames"] + 4
    assert started["frames"] == kept - 4  # the loop trains on the kept frames minus the held-out ones

    losses = _validation(events)
    assert sorted(losses) == [0, 1, 2]  # before training, then at each epoch's end
    assert losses[2] < losses[0], losses
    assert {e["frames"] for e in events if e["type"] == runfiles.VALIDATION} == {4}
    assert all(not runfiles.event_problems(e) for e in events)

    meta = read_metadata(tmp_path / "run" / runfiles.epoch_file("tibbie", 2))
    assert float(meta["lora_studio_validation_loss"]) == pytest.approx(losses[2])
    assert meta["ss_validation_split"] == "4.0" and meta["lora_studio_validation_frames"] == "4"
    assert meta["ss_num_train_images"] == str(kept - 4)  # repeats 1: one image per trained frame


def test_the_same_lora_gives_the_same_validation_loss_even_after_a_stop_and_resume(demo_with_validation, tmp_path):
    config = demo_with_validation
    straight = []
    train(config, tmp_path / "straight", straight.append)

    first, resumed = [], []
    epochs_done = []
    train(config, tmp_path / "stopped", lambda e: (first.append(e), e["type"] == runfiles.EPOCH and epochs_done.append(1)),
          should_stop=lambda: bool(epochs_done))
    assert any(e["type"] == runfiles.STOPPED for e in first)
    train(config, tmp_path / "stopped", resumed.append, resume=True)

    assert _validation(first) == {0: _validation(straight)[0], 1: _validation(straight)[1]}
    assert _validation(resumed) == {2: _validation(straight)[2]}  # bit for bit: fixed timesteps and noise


def test_a_split_is_a_fraction_or_a_count_and_leaves_something_to_train():
    assert held_out_count(46, 0) == 0
    assert held_out_count(46, 0.1) == 5
    assert held_out_count(5, 0.01) == 1  # a fraction holds out at least one frame
    assert held_out_count(46, 4) == 4

    class F:
        def __init__(self, i):
            self.id = f"frame_{i:03d}.png"

    frames = [F(i) for i in range(10)]
    trained, held = split_validation(frames, 3, seed=42)
    assert len(held) == 3 and not {f.id for f in held} & {f.id for f in trained}
    again, held_again = split_validation(list(reversed(frames)), 3, seed=42)
    assert [f.id for f in held_again] == [f.id for f in held]  # the same frames, whatever order the scan found
    with pytest.raises(UserError, match="leaving none to train"):
        split_validation(frames, 10, seed=42)


def test_a_frozen_text_encoder_with_cached_caption_embeddings_gives_the_same_validation_loss(
        tiny_model_dir, tiny_frames, tmp_path):
    from tests.train.test_loop import tiny_config

    before = {}
    for shuffle in (True, False):  # shuffled captions keep the encoder; fixed ones cache its outputs
        events = []
        config = tiny_config(tiny_model_dir, tiny_frames, validation_split=2, te_lr=0.0, shuffle_caption=shuffle,
                             epochs=1)
        train(config, tmp_path / f"shuffle-{shuffle}", events.append)
        before[shuffle] = _validation(events)[0]
        assert sorted(_validation(events)) == [0, 1]
    # The held-out captions are never shuffled: both paths embed the same text with the same encoder.
    assert before[True] == pytest.approx(before[False], rel=1e-5)
