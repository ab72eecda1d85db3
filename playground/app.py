"""The playground's Blocks: Play, Compare, Inspect and Train tabs over `wm_core`'s public API."""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
import torch

from .compare_hub import CompareHub
from .compare_tab import build_compare_tab
from .hub import ROOT, PlayHub
from .inspect_tab import build_inspect_tab
from .play_tab import build_play_tab
from .train_tab import build_train_tab

CSS = """
.gradio-container { max-width: 1240px !important; }
#wm-title h1 { margin-bottom: 0; }
.wm-mono textarea { font-family: ui-monospace, Menlo, Consolas, monospace !important; font-size: 12px !important;
  white-space: pre; }
"""


def set_threads() -> int:
    """Give torch an explicit thread count (WM_THREADS overrides). The count is process-wide, shared by
    play steps and training jobs. Half the cores: on 2 busy cores a batch-1 dream step took 1.3 ms with
    one thread and 45-100 ms with two, and the other half keeps the server and the browser loop alive
    while a job trains."""
    n = int(os.environ.get("WM_THREADS") or max(1, (os.cpu_count() or 2) // 2))
    torch.set_num_threads(n)
    return n


def build_demo(checkpoint_dir: Path | str | None = None, runs_dir: Path | str | None = None) -> gr.Blocks:
    """The whole app; `launch()` it, or mount it in a FastAPI app."""
    set_threads()
    shipped = Path(checkpoint_dir) if checkpoint_dir else ROOT / "checkpoints"
    runs = Path(runs_dir) if runs_dir else Path("runs")
    hub = PlayHub(runs / "play-data")
    with gr.Blocks(title="World Model Playground") as demo:
        gr.Markdown(
            "# World Model Playground\nTrain world models on gymnasium environments, then play inside "
            "their dreams with your keyboard.",
            elem_id="wm-title",
        )
        with gr.Tabs():
            with gr.Tab("Play", id="play"):
                play = build_play_tab(hub, shipped, runs, runs / "recordings")
            with gr.Tab("Compare", id="compare"):
                build_compare_tab(CompareHub(), shipped, runs)
            with gr.Tab("Inspect", id="inspect"):
                inspect = build_inspect_tab(shipped, runs)
            with gr.Tab("Train", id="train"):
                finished = build_train_tab(runs)
        finished.then(play["refresh"], None, play["checkpoint"]).then(inspect["refresh"], None, inspect["checkpoint"])
    demo.css = CSS
    return demo
