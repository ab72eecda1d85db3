"""Form components with the app's own messages: a slider whose number box, when cleared or typed out of range,
answers with the field's name and range in one line (Gradio's own check names neither, and a cleared box
reached users as a Python TypeError)."""

from __future__ import annotations

import math
import types
from typing import Any

import gradio as gr


def _checked(self: gr.Slider, payload: Any) -> float:
    """The value as a float in [minimum, maximum], or gr.Error naming the field and its range."""
    name, lo, hi = self.label or "This slider", self.minimum, self.maximum
    ok = isinstance(payload, (int, float)) and not isinstance(payload, bool) and math.isfinite(payload)
    if not ok or not lo <= payload <= hi:
        got = "it is empty" if payload is None or payload == "" else f"not {payload}"
        raise gr.Error(f"{name}: type a number from {lo:g} to {hi:g} ({got})", print_exception=False)
    return gr.Slider.preprocess(self, payload)


def Slider(*args: Any, **kwargs: Any) -> gr.Slider:  # noqa: N802  (used like the component it returns)
    """A gr.Slider whose value is checked with a message that names the field: "Temperature: type a number from
    0 to 2 (not 9)". (An instance override rather than a subclass: Gradio writes a .pyi stub beside the module
    of every Component subclass.)"""
    slider = gr.Slider(*args, **kwargs)
    slider.preprocess = types.MethodType(_checked, slider)
    return slider
