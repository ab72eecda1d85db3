"""Compare tab: up to four checkpoints of one env driven by one key stream beside the real env, each with
its predictions and live divergence from the real frame; "dream from here" shows K sampled futures per model
next to the real future, as a filmstrip and a divergence-over-time plot."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

import wm_core

from .compare_hub import CompareHub
from .hub import control_handler, friendly, list_checkpoints, tick_server_function
from .play_tab import keymap_markdown, player_assets

MAX_RUNS = 4

COMPARE_HTML = """
<div class="wm-compare" data-client="${value}">
  <div class="wm-cmp-head">
    <span class="wm-cmp-status">Pick checkpoints of one env above and press Start to compare.</span>
    <span class="wm-cmp-meta">step <b class="wm-cmp-step">0</b> · frames/s <b class="wm-cmp-fps">0</b> ·
      key→frame <b class="wm-cmp-latency">–</b></span>
  </div>
  <div class="wm-cmp-panels">
    <div class="wm-cmp-panel wm-cmp-real-panel">
      <div class="wm-cmp-label">real env (same keys)</div>
      <canvas class="wm-cmp-real" width="64" height="64" tabindex="0"></canvas>
      <div class="wm-cmp-rows">
        <span>reward</span><b class="wm-cmp-real-reward">0.00</b>
        <span>return</span><b class="wm-cmp-real-return">0.0</b>
        <span>episode</span><b class="wm-cmp-real-state">–</b>
      </div>
    </div>
  </div>
</div>
"""


def build_compare_tab(hub: CompareHub, shipped_dir: Path, runs_dir: Path) -> dict:
    """Build the Compare tab inside the current Blocks; returns the components other tabs refresh."""

    def choices() -> list[tuple[str, str]]:
        return [(c.label, c.path) for c in list_checkpoints(shipped_dir, runs_dir)]

    def default() -> list[str]:
        """The first listed checkpoint and up to one more of its env."""
        found = list_checkpoints(shipped_dir, runs_dir)
        return [c.path for c in found if c.env_id == found[0].env_id][:2] if found else []

    def describe(runs: list[str] | None) -> str:
        runs = list(runs or [])
        if not runs:
            return "Pick 1 to 4 checkpoints of one env (train some in the Train tab)."
        if len(runs) > MAX_RUNS:
            return f"**{len(runs)} checkpoints picked: Compare shows at most {MAX_RUNS}.** Remove some."
        try:
            metas = [wm_core.read_meta(r) for r in runs]
        except Exception as e:
            return f"**A checkpoint cannot be read:** {friendly(e)}"
        problem = wm_core.compare_problem(metas)
        if problem:
            return f"**{problem}.**"
        env_id = metas[0]["env_id"]
        plural = "s" * (len(runs) > 1)
        return f"{len(runs)} checkpoint{plural} of **{env_id}**: press Start.  \n{keymap_markdown(env_id)}"

    gr.Markdown(
        "Up to four models of one environment, driven by **one key stream** in lockstep with the real "
        "environment, all started from the same real frames. Each panel shows the model's own prediction and "
        "its divergence from the real frame (foreground-masked MSE). **Dream from here** freezes the real env "
        "and shows K sampled futures per model next to the real future."
    )
    with gr.Row():
        picked = gr.Dropdown(
            choices=choices(),
            value=default(),
            multiselect=True,
            label=f"Runs to compare (up to {MAX_RUNS}, one env)",
            scale=4,
            elem_id="wm-cmp-runs",
        )
        refresh = gr.Button("↻ Refresh", scale=0, min_width=120)
        start = gr.Button("Start", variant="primary", scale=0, min_width=120, elem_id="wm-cmp-start")
    info = gr.Markdown(describe(default()), elem_id="wm-cmp-info")
    with gr.Row(equal_height=False):
        with gr.Column(scale=4, min_width=700):
            board = gr.HTML(
                value="",
                html_template=COMPARE_HTML,
                **player_assets("compare"),
                server_functions=[tick_server_function(hub)],
                elem_id="wm-compare",
            )
        with gr.Column(scale=1, min_width=220):
            temperature = gr.Slider(
                0.0, 2.0, value=1.0, step=0.05, label="Temperature (live, every model)", elem_id="wm-cmp-temperature"
            )
            steps = gr.Slider(
                1,
                6,
                value=2,
                step=1,
                label="Sampling steps (pixel-space models, live)",
                elem_id="wm-cmp-sampling-steps",
            )
            with gr.Row():
                pause = gr.Button("Pause", elem_id="wm-cmp-pause", min_width=80)
                reset = gr.Button("Reset", elem_id="wm-cmp-reset", min_width=80)
    status = gr.Markdown("", elem_id="wm-cmp-status-line")
    with gr.Row():
        samples = gr.Slider(1, 8, value=4, step=1, label="Dreams per model (K)", elem_id="wm-cmp-samples")
        horizon = gr.Slider(5, 60, value=20, step=1, label="Horizon (steps)", elem_id="wm-cmp-horizon")
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
        problem = describe(runs)
        if not runs or problem.startswith("**"):
            return cid, cid, problem, ""
        try:
            s = hub.start(cid, list(runs), temperature=temp)
            s.set_sampling_steps(int(n_steps))
        except Exception as e:
            return cid, cid, f"**Could not start:** {friendly(e)}", ""
        text = f"**{len(s.labels)} model{'s' * (len(s.labels) > 1)}** on **{s.env_id}**  \n{keymap_markdown(s.env_id)}"
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
    refresh.click(lambda: gr.update(choices=choices()), None, picked)
    start.click(on_start, [client, picked, temperature, steps], [client, board, info, status])
    temperature.change(control_handler(hub, "temperature"), [client, temperature], status)
    steps.change(control_handler(hub, "steps"), [client, steps], status)
    pause.click(control_handler(hub, "pause"), client, status)
    reset.click(control_handler(hub, "reset"), client, status)
    dream.click(on_dream, [client, samples, horizon], [status, strip, plot])
    return {"runs": picked, "refresh": lambda: gr.update(choices=choices())}
