"""Every number in the Train form: refused with its range in words when empty or out of range, never clamped."""

from __future__ import annotations

import gradio as gr
import pytest

from lora_studio.config import FIELD_NAMES, TrainConfig
from lora_studio.errors import UserError
from lora_studio.ui.form import build_fields, read_form, to_widget


@pytest.fixture
def form():
    config = TrainConfig(name="tibbie", dataset="/frames", trigger_word="tibbie")
    with gr.Blocks():
        comps = build_fields(config, FIELD_NAMES)
    return comps, {comp: to_widget(name, getattr(config, name)) for name, comp in comps.items()}


def typed(form, **values):
    comps, data = form
    return read_form({**data, **{comps[name]: value for name, value in values.items()}}, comps)


@pytest.mark.parametrize("value, words", [(0, "'batch_size' cannot be 0"), (99, "'batch_size' cannot be 99"),
                                          (None, "'batch_size' is empty"), (2.5, "'batch_size' cannot be 2.5")])
def test_a_batch_size_out_of_range_is_refused_with_the_range(form, value, words):
    with pytest.raises(UserError) as caught:
        typed(form, batch_size=value)
    assert words in caught.value.message
    assert caught.value.hint == "type a whole number from 1 to 64" or "expected int" in caught.value.hint


def test_gpu_batch_sizes_up_to_64_are_allowed(form):
    assert typed(form, batch_size=8).batch_size == 8
    assert typed(form, batch_size=64.0).batch_size == 64


def test_no_number_widget_clamps_or_rounds_on_its_own(form):
    comps, _ = form
    for name, comp in comps.items():
        if isinstance(comp, gr.Number):
            # Gradio would refuse out-of-range values in preprocessing (a traceback, no message) or round them.
            assert comp.minimum is None and comp.maximum is None and comp.precision is None, name
        assert not isinstance(comp, gr.Slider), name


def test_every_numeric_field_says_its_range(form):
    with pytest.raises(UserError, match="'unet_lr' cannot be 20") as caught:
        typed(form, unet_lr=20)
    assert caught.value.hint == "type a number from 0 to 10"
    with pytest.raises(UserError, match="'te_lr' cannot be 11"):
        typed(form, te_lr="11")
    with pytest.raises(UserError, match="'seed' is empty") as caught:
        typed(form, seed="")
    assert caught.value.hint == "type a whole number from 0 to 4294967295"
    assert typed(form, te_lr="").te_lr is None and typed(form, te_lr="auto").te_lr is None
