"""The playground's Blocks: the tabs over `wm_core`'s public API, composed from a list (the tab contract is in
`playground.context`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gradio as gr
import torch

import wm_core

from .compare_tab import build_compare_tab
from .context import AppContext, user_of
from .hub import ROOT
from .inspect_tab import build_inspect_tab
from .jobs import JobQueue
from .learn_tab import CSS as LEARN_CSS
from .learn_tab import build_learn_tab
from .play_tab import build_play_tab
from .room_tab import build_room_tab
from .train_tab import build_train_tab
from .workshop import HideApiBeforeLogin, Room

BASE_CSS = """
.gradio-container { max-width: 1240px !important; }
#wm-title h1 { margin-bottom: 0; }
.wm-mono textarea { font-family: ui-monospace, Menlo, Consolas, monospace !important; font-size: 12px !important;
  white-space: pre; }
"""

CSS = BASE_CSS + LEARN_CSS
"""The app's style sheet: pass it to `launch(css=CSS)` (Gradio 6 takes the CSS at launch, not in Blocks)."""

# (title, id, builder): add a tab by adding a line (see playground/context.py for what a builder gets and returns)
TABS = (
    ("Play", "play", build_play_tab),
    ("Compare", "compare", build_compare_tab),
    ("Inspect", "inspect", build_inspect_tab),
    ("Train", "train", build_train_tab),
    ("Learn", "learn", build_learn_tab),
)


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
    tabs = TABS + ((("Room", "room", build_room_tab),) if room is not None else ())
    with gr.Blocks(title="World Model Playground") as demo:
        gr.Markdown(
            "# World Model Playground\nTrain world models on gymnasium environments, then play inside "
            "their dreams with your keyboard.",
            elem_id="wm-title",
        )
        built, room_tab = [], None
        with gr.Tabs():
            for title, tab_id, build in tabs:
                with gr.Tab(title, id=tab_id, visible=tab_id != "room") as component:
                    built.append(build(ctx))
                room_tab = component if tab_id == "room" else room_tab
        lists = [c for tab in built for c in tab.checkpoint_lists]

        def refresh(request: gr.Request) -> list[dict[str, Any]]:
            update = ctx.refreshed(request)  # one scan of the run folders for every list
            return [update] * len(lists)

        for tab in built:  # a finished training run appears in every checkpoint list
            if tab.trained is not None:
                tab.trained.then(refresh, None, lists)
        if room is not None:  # each page lists what its login may open; the Room tab shows for the instructor

            def show_room(request: gr.Request) -> dict[str, Any]:
                return gr.update(visible=room.is_instructor(user_of(request)))

            demo.load(refresh, None, lists)
            demo.load(show_room, None, room_tab)
            for tab in built:
                if tab.on_load is not None:
                    demo.load(tab.on_load, None, tab.on_load_outputs)
    return demo


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
