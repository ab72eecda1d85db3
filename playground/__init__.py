"""The World Model Playground app (Gradio): Play and Train tabs over `wm_core`."""

from .app import build_demo

__all__ = ["build_demo"]
