"""Play tab: drive a learned dream with the keyboard, optionally beside the real env."""

from __future__ import annotations

import gradio as gr

import wm_core

from .context import AppContext, Tab, TabSpec, keymap_markdown, user_of
from .hub import SessionHub, control_handler, friendly
from .player import player
from .widgets import Slider


def describe(run: str | None) -> str:
    """What a picked checkpoint is and its keys."""
    if not run:
        return "No checkpoint yet: train one in the Train tab."
    try:
        m = wm_core.read_meta(run)
        return f"**{m['family']}** on **{m['env_id']}**, step {m['step']}  \n{keymap_markdown(m)}"
    except Exception as e:
        return f"**This checkpoint cannot be read:** {friendly(e)}"


def started(s: wm_core.Session) -> str:
    """The info line after Start: the model, its keys, its command, and what temperature and steps do."""
    m, dream = s.meta, s.dreams[0]
    probe = " (probe view: what the latent knows)" if dream.decoded_by == "probe" else ""
    steps = "" if dream.steps_range else " (no sampling steps: it draws each frame in one pass)"
    return (
        f"**{m['family']}** on **{m['env_id']}**, step {m['step']} · frames from the {dream.decoded_by}{probe}"
        f"  \n{keymap_markdown(m)}  \nMade by `{m.get('command') or 'unknown command'}`"
        f"  \nTemperature for {m['family']}: {s.model.capabilities.temperature or 'not described'}{steps}"
        f"  \nAutopilot driver: {s.driver_label if s.agent is not None else 'none (no agent, no planner)'}"
    )


def controls() -> dict[str, gr.components.Component]:
    """The side column of live controls."""
    c = {"temperature": Slider(0.0, 2.0, value=1.0, step=0.05, label="Temperature (live)", elem_id="wm-play-temp",
                                  info="How adventurous the dream's sampling is (0 = most likely future); what it "
                                  "changes depends on the family, shown when a checkpoint starts")}  # fmt: skip
    c["steps"] = Slider(1, 6, value=2, step=1, label="Sampling steps (pixel-space models, live)",
                           elem_id="wm-sampling-steps", info="Denoising passes per dream frame: 1 is fastest and "
                           "draws the average of the possible next frames; 2-3 commit to one sharp future")  # fmt: skip
    c["real"] = gr.Checkbox(False, label="Real env beside the dream (same keys)", elem_id="wm-lockstep")
    c["record_data"] = gr.Checkbox(False, label="Record my real-env play as training data", elem_id="wm-record-data",
                                   info="with the real env on: each real episode you play is saved for the Train "
                                   "tab's Data list")  # fmt: skip
    c["autopilot"] = gr.Checkbox(False, label="Let the trained agent or planner drive (any key takes over)",
                                 elem_id="wm-autopilot")  # fmt: skip
    with gr.Row():
        c["pause"] = gr.Button("Pause", elem_id="wm-pause", min_width=80)
        c["step"] = gr.Button("Step", elem_id="wm-step", min_width=80)
    with gr.Row():
        c["reset"] = gr.Button("Reset", elem_id="wm-reset", min_width=80)
        c["record"] = gr.Button("● Record", elem_id="wm-record", min_width=80)
    return c


def build_play_tab(ctx: AppContext) -> Tab:
    """Build the Play tab inside the current Blocks."""
    hub = SessionHub(data_dir=ctx.play_data, batcher=ctx.batcher, device=ctx.device)
    gr.Markdown(
        "Drive a learned dream with your keyboard. The dream starts from a few real frames of the "
        "environment, then the model predicts every frame, reward and episode end."
    )
    with gr.Row():
        ckpt = gr.Dropdown(choices=ctx.checkpoints(), value=ctx.first_checkpoint(), label="Checkpoint", scale=4,
                           elem_id="wm-checkpoint")  # fmt: skip
        refresh = gr.Button("↻ Refresh list", scale=0, min_width=170)
        start = gr.Button("Start", variant="primary", scale=0, min_width=120, elem_id="wm-start")
    info = gr.Markdown(describe(ctx.first_checkpoint()), elem_id="wm-play-info")
    skipped = gr.Markdown(ctx.unreadable(), elem_id="wm-play-skipped")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=640):
            live = player(hub, "wm-player")
        with gr.Column(scale=1, min_width=260):
            c = controls()
    status = gr.Markdown("", elem_id="wm-play-status")
    files = gr.File(label="Recording (GIF + JSON of actions, rewards and ends)", file_count="multiple", visible=False)
    client = gr.State("")

    def on_start(cid: str, run: str | None, temp: float, n_steps: float, real: bool, auto: bool, request: gr.Request):
        cid = cid or hub.new_client()
        if not run:
            return cid, cid, "**No checkpoint selected.** Train one in the Train tab or pick a shipped one.", ""
        try:
            s = hub.start(cid, run, temperature=temp, real=real, data_dir=ctx.runs_of(user_of(request)) / "play-data")
            if s.dreams[0].steps_range:
                s.set_sampling_steps(int(n_steps))
            if auto:
                hub.control(cid, "autopilot", True)
        except Exception as e:
            return cid, cid, f"**Could not start:** {friendly(e)}", ""
        return cid, cid, started(s), "Click the dream and hold the keys."

    def on_record(cid: str):
        try:
            text, paths = hub.record(cid, ctx.records)
        except Exception as e:
            return f"**Could not save the recording:** {friendly(e)}", gr.update()
        return text, gr.update(value=paths, visible=True) if paths else gr.update()

    ckpt.change(describe, ckpt, info)
    inputs = [client, ckpt, c["temperature"], c["steps"], c["real"], c["autopilot"]]
    start.click(on_start, inputs, [client, live, info, status])

    def on_refresh(request: gr.Request) -> tuple[dict, str]:
        return ctx.refreshed(request), ctx.unreadable(user_of(request))

    refresh.click(on_refresh, None, [ckpt, skipped])
    for name in ("temperature", "steps", "real", "record_data", "autopilot"):
        c[name].change(control_handler(hub, name), [client, c[name]], status)
    for name in ("pause", "step", "reset"):
        c[name].click(control_handler(hub, name), client, status)
    c["record"].click(on_record, client, [status, files])
    return Tab(checkpoint_lists=[ckpt])


PLAY = TabSpec("Play", "play", build_play_tab)
