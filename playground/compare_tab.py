"""Compare tab: up to four checkpoints of one env driven by one key stream beside the real env, each with
its predictions and live divergence from the real frame; "dream from here" shows K sampled futures per model
next to the real future, as a filmstrip and a divergence-over-time plot."""

from __future__ import annotations

import gradio as gr

import wm_core

from .context import AppContext, Tab, TabSpec, keymap_markdown
from .hub import SessionHub, control_handler, friendly, list_checkpoints
from .player import player
from .widgets import Slider

MAX_RUNS = 4


def problem(runs: list[str] | None) -> str | None:
    """Why these checkpoints cannot be compared (one line), or None when they can."""
    runs = list(runs or [])
    if not runs:
        return "Pick 1 to 4 checkpoints of one env (train some in the Train tab)."
    if len(runs) > MAX_RUNS:
        return f"{len(runs)} checkpoints picked: Compare shows at most {MAX_RUNS}. Remove some."
    try:
        return wm_core.compare_problem([wm_core.read_meta(r) for r in runs])
    except Exception as e:
        return f"A checkpoint cannot be read: {friendly(e)}"


def describe(runs: list[str] | None) -> str:
    """The picked checkpoints in a line, or why they cannot be compared."""
    why = problem(runs)
    if why is not None:
        return f"**{why}**"
    meta = wm_core.read_meta(runs[0])
    n = f"{len(runs)} checkpoint{'s' * (len(runs) > 1)}"
    return f"{n} of **{meta['env_id']}**: press Start.  \n{keymap_markdown(meta)}"


def build_compare_tab(ctx: AppContext) -> Tab:
    """Build the Compare tab inside the current Blocks."""
    hub = SessionHub(hold=True, batcher=ctx.batcher, device=ctx.device)
    found = list_checkpoints(ctx.shipped, ctx.runs)
    default = [c.path for c in found if c.env_id == found[0].env_id][:2] if found else []
    gr.Markdown(
        "Up to four models of one environment, driven by **one key stream** in lockstep with the real "
        "environment, all started from the same real frames. Each panel shows the model's own prediction and "
        "its divergence from the real frame (foreground-masked MSE). **Dream from here** freezes the real env "
        "and shows K sampled futures per model next to the real future."
    )
    with gr.Row():
        picked = gr.Dropdown(choices=ctx.checkpoints(), value=default, multiselect=True, scale=4,
                             label=f"Runs to compare (up to {MAX_RUNS}, one env)", elem_id="wm-cmp-runs")  # fmt: skip
        refresh = gr.Button("↻ Refresh", scale=0, min_width=120)
        start = gr.Button("Start", variant="primary", scale=0, min_width=120, elem_id="wm-cmp-start")
    info = gr.Markdown(describe(default), elem_id="wm-cmp-info")
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=700):
            live = player(hub, "wm-compare", "Pick checkpoints of one env above and press Start to compare.")
        with gr.Column(scale=1, min_width=220):
            temperature = Slider(0.0, 2.0, value=1.0, step=0.05, label="Temperature (live, every model)",
                                    elem_id="wm-cmp-temperature")  # fmt: skip
            steps = Slider(1, 6, value=2, step=1, label="Sampling steps (pixel-space models, live)",
                              elem_id="wm-cmp-sampling-steps")  # fmt: skip
            with gr.Row():
                pause = gr.Button("Pause", elem_id="wm-cmp-pause", min_width=80)
                reset = gr.Button("Reset", elem_id="wm-cmp-reset", min_width=80)
    status = gr.Markdown("", elem_id="wm-cmp-status-line")
    with gr.Row():
        samples = Slider(1, 8, value=4, step=1, label="Dreams per model (K)", elem_id="wm-cmp-samples")
        horizon = Slider(5, 60, value=20, step=1, label="Horizon (steps)", elem_id="wm-cmp-horizon")
        dream = gr.Button("Dream from here", variant="primary", scale=0, min_width=180, elem_id="wm-cmp-dream")
    gr.Markdown(
        "Every future uses one shared sequence of random actions, so samples differ only by each model's "
        "sampling at this temperature. Filmstrip rows: the real env on top, then each model's K samples in the "
        "order listed; dark cells come after the real episode ended, dimmed ones after a sample predicted an end."
    )
    with gr.Row(equal_height=False):
        # No label boxes: they would cover the filmstrip's first real frame and the plot's title.
        strip = gr.Image(label="Futures", show_label=False, type="numpy", interactive=False, elem_id="wm-cmp-filmstrip")
        plot = gr.Plot(label="Divergence from the real future", show_label=False, elem_id="wm-cmp-plot")
    client = gr.State("")

    def on_start(cid: str, runs: list[str] | None, temp: float, n_steps: float):
        cid = cid or hub.new_client()
        why = problem(runs)
        if why is not None:
            return cid, cid, f"**{why}**", ""
        try:
            s = hub.start(cid, list(runs), temperature=temp)
            s.set_sampling_steps(int(n_steps))
        except Exception as e:
            return cid, cid, f"**Could not start:** {friendly(e)}", ""
        models = f"**{len(s.labels)} model{'s' * (len(s.labels) > 1)}**"
        text = f"{models} on **{s.env_id}**  \n{keymap_markdown(s.metas[0])}"
        return cid, cid, text, "Click a frame and hold the keys."

    def on_dream(cid: str, k: float, h: float):
        try:
            text, futures = hub.dream_from_here(cid, int(k), int(h))
        except Exception as e:
            return f"**Could not dream from here:** {friendly(e)}", None, None
        if futures is None:
            return text, None, None
        big = futures.filmstrip.repeat(2, axis=0).repeat(2, axis=1)  # 2x without blur: the image box scales it
        return text, big, futures.figure

    picked.change(describe, picked, info)
    refresh.click(ctx.refreshed, None, picked)
    start.click(on_start, [client, picked, temperature, steps], [client, live, info, status])
    temperature.change(control_handler(hub, "temperature"), [client, temperature], status)
    steps.change(control_handler(hub, "steps"), [client, steps], status)
    pause.click(control_handler(hub, "pause"), client, status)
    reset.click(control_handler(hub, "reset"), client, status)
    dream.click(on_dream, [client, samples, horizon], [status, strip, plot])
    return Tab(checkpoint_lists=[picked])


COMPARE = TabSpec("Compare", "compare", build_compare_tab)
