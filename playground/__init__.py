"""The World Model Playground app (Gradio): the Play, Compare, Inspect, Train and Learn tabs over `wm_core`."""

from .app import CSS, build_demo, launch
from .workshop import Room

__all__ = ["CSS", "Room", "build_demo", "launch"]
