"""The playground's Blocks: the tabs over `wm_core`'s public API, composed from a list (the tab contract is in
`playground.context`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gradio as gr
import torch

import wm_core

from .compare_tab import COMPARE
from .context import AppContext, Tab, TabSpec, user_of
from .hub import ROOT
from .inspect_tab import INSPECT
from .jobs import JobQueue
from .learn_tab import LEARN
from .play_tab import PLAY
from .room_tab import ROOM
from .train_tab import TRAIN
from .workshop import HideApiBeforeLogin, Room

BASE_CSS = """
.gradio-container { max-width: 1240px !important; }
#wm-title h1 { margin-bottom: 0; }
.wm-mono textarea { font-family: ui-monospace, Menlo, Consolas, monospace !important; font-size: 12px !important;
  white-space: pre; }
"""

# Add a tab by adding its spec (see playground/context.py for what a builder gets and returns).
TABS: tuple[TabSpec, ...] = (PLAY, COMPARE, INSPECT, TRAIN, LEARN, ROOM)

CSS = BASE_CSS + "".join(spec.css for spec in TABS)
"""The app's style sheet: pass it to `launch(css=CSS)` (Gradio 6 takes the CSS at launch, not in Blocks)."""


def set_threads() -> int:
    """Give torch an explicit thread count (WM_THREADS overrides). The count is process-wide, shared by
    play steps and training jobs. Half the cores: on 2 busy cores a batch-1 dream step took 1.3 ms with
    one thread and 45-100 ms with two, and the other half keeps the server and the browser loop alive
    while a job trains."""
    n = int(os.environ.get("WM_THREADS") or max(1, (os.cpu_count() or 2) // 2))
    torch.set_num_threads(n)
    return n


def train_slots() -> int:
    """How many runs may train at once: one per GPU, else one per core the players' dream steps do not use."""
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, (os.cpu_count() or 2) - torch.get_num_threads())


def build_demo(
    checkpoint_dir: Path | str | None = None, runs_dir: Path | str | None = None, batch_wait_ms: float = 3.0,
    room: Room | None = None, slots: int | None = None, device: str = "cpu",
) -> gr.Blocks:  # fmt: skip
    """The whole app; `launch` it (below). Players' dream steps of one model that arrive within `batch_wait_ms`
    of each other run as one batched forward pass (0: each steps alone); at most `slots` runs train at once
    (default `train_slots()`). With a `room` (workshop mode) each login sees its own runs, and the instructor
    also the Room tab. Players' dreams run on `device` (cpu or cuda)."""
    set_threads()
    shipped = Path(checkpoint_dir) if checkpoint_dir else ROOT / "checkpoints"
    ctx = AppContext(shipped, Path(runs_dir or "runs"), wm_core.StepBatcher(batch_wait_ms), room,
                     JobQueue(slots or train_slots()), device)  # fmt: skip
    with gr.Blocks(title="World Model Playground") as demo:
        gr.Markdown(
            "# World Model Playground\nTrain world models on gymnasium environments, then play inside "
            "their dreams with your keyboard.",
            elem_id="wm-title",
        )
        built: list[tuple[TabSpec, gr.Tab, Tab]] = []
        with gr.Tabs():
            for spec in (s for s in TABS if s.available(ctx)):
                with gr.Tab(spec.title, id=spec.id, visible=spec.shown_to is None) as component:
                    built.append((spec, component, spec.build(ctx)))
        lists = [c for _, _, tab in built for c in tab.checkpoint_lists]

        def refresh(request: gr.Request) -> list[dict[str, Any]]:
            update = ctx.refreshed(request)  # one scan of the run folders for every list
            return [update] * len(lists)

        for spec, component, tab in built:
            if tab.trained is not None:  # a finished training run appears in every checkpoint list
                tab.trained.then(refresh, None, lists)
            if spec.shown_to is not None:
                demo.load(_visibility(ctx, spec), None, component)
            if tab.on_load is not None:
                demo.load(tab.on_load, None, tab.on_load_outputs)
        if room is not None:  # each page lists what its login may open
            demo.load(refresh, None, lists)
    return demo


def _visibility(ctx: AppContext, spec: TabSpec) -> Any:
    """A page-load handler showing `spec`'s tab to the logins it is for."""

    def show(request: gr.Request) -> dict[str, Any]:
        return gr.update(visible=spec.shown_to(ctx, user_of(request)))

    return show


PAGE_STATES = 128
"""Browser sessions whose page state the server keeps (least recently used beyond this are forgotten; such a
page presses Start again). Gradio copies the whole app's component config for each session, about 1 MB here,
and by default keeps 10,000 of them: a room that keeps joining would grow the server by gigabytes."""


def launch(demo: gr.Blocks, **kwargs: Any) -> Any:
    """`demo.launch(**kwargs)` with the app's style sheet, every handler's error message shown to the user
    (Gradio hides them behind a bare "Error" without `show_error`), at most PAGE_STATES page states kept and, with
    logins (`auth`), no API description on the login page (`HideApiBeforeLogin`).
    app.py, the tests and the benchmarks launch through here, so they serve the same app."""
    kwargs.setdefault("state_session_capacity", PAGE_STATES)
    if kwargs.get("auth"):  # the login page keeps the server's paths to itself
        from starlette.middleware import Middleware

        app_kwargs = kwargs.setdefault("app_kwargs", {})
        app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), Middleware(HideApiBeforeLogin)]
    return demo.launch(css=CSS, show_error=True, **kwargs)
