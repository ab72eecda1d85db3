"""Play tab: drive a learned dream with the keyboard, optionally beside the real env."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

import wm_core

from .hub import PlayHub, control_handler, friendly, list_checkpoints, tick_server_function

STATIC = Path(__file__).parent / "static"


def player_assets(name: str) -> dict[str, str]:
    """gr.HTML's css_template and js_on_load for a frame-loop player: static/common.* then static/{name}.*."""
    css, js = ("\n".join((STATIC / f"{part}.{ext}").read_text() for part in ("common", name)) for ext in ("css", "js"))
    return {"css_template": css, "js_on_load": js}


PLAYER_HTML = """
<div class="wm-player">
  <div class="wm-screens">
    <div class="wm-screen"><canvas class="wm-dream" width="64" height="64" tabindex="0"></canvas>
      <span class="wm-caption">dream (model prediction)</span></div>
    <div class="wm-screen wm-real-panel"><canvas class="wm-real" width="64" height="64"></canvas>
      <span class="wm-caption">real env, same keys · return <b class="wm-real-return"></b></span></div>
  </div>
  <div class="wm-side">
    <div class="wm-status">Pick a checkpoint above and press Start to play.</div>
    <span>step</span><b class="wm-step">0</b>
    <span>predicted reward</span><b class="wm-reward">0.00</b>
    <span>dream return</span><b class="wm-return">0.0</b>
    <span>predicted end</span><span><span class="wm-done-track"><span class="wm-done-bar"></span></span>
      <b class="wm-done">0%</b></span>
    <span>driver</span><b class="wm-driver">you</b>
    <div class="wm-extras"></div>
    <span>frames/s</span><b class="wm-fps">0</b>
    <span>key→frame</span><b class="wm-latency">–</b>
    <span>reward sparkline</span><span></span>
    <canvas class="wm-spark" width="220" height="48"></canvas>
  </div>
</div>
"""


def keymap_markdown(env_id: str) -> str:
    """The env's keys as a line of markdown."""
    km = wm_core.env_entry(env_id).keymap
    keys = " · ".join(f"**{line.split(' ', 1)[0]}** {line.split(' ', 1)[1]}" for line in km.describe())
    idle = "" if km.idle_action is not None else " — the dream waits while no key is held"
    return f"Keys: {keys}{idle}"


def build_play_tab(hub: PlayHub, shipped_dir: Path, runs_dir: Path, records_dir: Path) -> dict:
    """Build the Play tab inside the current Blocks; returns the components other tabs refresh."""

    def choices() -> list[tuple[str, str]]:
        return [(c.label, c.path) for c in list_checkpoints(shipped_dir, runs_dir)]

    def describe(run: str | None) -> str:
        if not run:
            return "No checkpoint yet: train one in the Train tab."
        try:
            m = wm_core.read_meta(run)
            return f"**{m['family']}** on **{m['env_id']}**, step {m['step']}  \n{keymap_markdown(m['env_id'])}"
        except Exception as e:
            return f"**This checkpoint cannot be read:** {friendly(e)}"

    gr.Markdown(
        "Drive a learned dream with your keyboard. The dream starts from a few real frames of the "
        "environment, then the model predicts every frame, reward and episode end."
    )
    with gr.Row():
        ckpt = gr.Dropdown(
            choices=choices(),
            value=(choices() or [(None, None)])[0][1],
            label="Checkpoint",
            scale=4,
            elem_id="wm-checkpoint",
        )
        refresh = gr.Button("↻ Refresh list", scale=0, min_width=170)
        start = gr.Button("Start", variant="primary", scale=0, min_width=120, elem_id="wm-start")
    info = gr.Markdown(describe((choices() or [(None, None)])[0][1]), elem_id="wm-play-info")
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=640):
            player = gr.HTML(
                value="",
                html_template=PLAYER_HTML.replace(
                    '<div class="wm-player">', '<div class="wm-player" data-client="${value}">'
                ),
                **player_assets("player"),
                server_functions=[tick_server_function(hub)],
                elem_id="wm-player",
            )
        with gr.Column(scale=1, min_width=260):
            temperature = gr.Slider(
                0.0,
                2.0,
                value=1.0,
                step=0.05,
                label="Temperature (live)",
                info="How adventurous the dream's sampling is (0 = most likely future); what it changes depends "
                "on the family, shown when a checkpoint starts",
            )
            steps = gr.Slider(
                1,
                6,
                value=2,
                step=1,
                label="Sampling steps (pixel-space models, live)",
                elem_id="wm-sampling-steps",
                info="Denoising passes per dream frame: 1 is fastest and draws the average of the possible next "
                "frames (blurry where the future is uncertain); 2-3 commit to one sharp future",
            )
            lockstep = gr.Checkbox(False, label="Real env beside the dream (same keys)", elem_id="wm-lockstep")
            record_data = gr.Checkbox(
                False,
                label="Record my real-env play as training data",
                info="with the real env on: each real episode you play is saved for the Train tab's Data list",
                elem_id="wm-record-data",
            )
            autopilot = gr.Checkbox(
                False, label="Let the trained agent or planner drive (any key takes over)", elem_id="wm-autopilot"
            )
            with gr.Row():
                pause = gr.Button("Pause", elem_id="wm-pause", min_width=80)
                step = gr.Button("Step", elem_id="wm-step", min_width=80)
            with gr.Row():
                reset = gr.Button("Reset", elem_id="wm-reset", min_width=80)
                record = gr.Button("● Record", elem_id="wm-record", min_width=80)
    status = gr.Markdown("", elem_id="wm-play-status")
    files = gr.File(label="Recording (GIF + JSON of actions, rewards and ends)", file_count="multiple", visible=False)
    client = gr.State("")

    def on_start(cid: str, run: str | None, temp: float, n_steps: float, real: bool, auto: bool):
        cid = cid or hub.new_client()
        if not run:
            return (
                cid,
                cid,
                "**No checkpoint selected.** Train one in the Train tab or pick a shipped one.",
                "",
            )
        try:
            s = hub.start(cid, run, temperature=temp, lockstep=real)
            if s.dream.steps_range:
                s.sampling_steps = int(n_steps)
            if auto:
                hub.control(cid, "autopilot", True)
        except Exception as e:
            return cid, cid, f"**Could not start:** {friendly(e)}", ""
        m = s.meta
        text = (
            f"**{m['family']}** on **{m['env_id']}**, step {m['step']} · frames from the "
            f"{s.dream.decoded_by}{' (probe view: what the latent knows)' if s.dream.decoded_by == 'probe' else ''}"
            f"  \n{keymap_markdown(m['env_id'])}  \nMade by `{m.get('command') or 'unknown command'}`"
            f"  \nTemperature for {m['family']}: {s.model.capabilities.temperature or 'not described'}"
            f"{'' if s.dream.steps_range else ' (no sampling steps: it draws each frame in one pass)'}"
            f"  \nAutopilot driver: {s.driver_label if s.agent is not None else 'none (no agent, no planner)'}"
        )
        return cid, cid, text, "Click the dream and hold the keys."

    def on_record(cid: str):
        try:
            text, paths = hub.record(cid, records_dir)
        except Exception as e:
            return f"**Could not save the recording:** {friendly(e)}", gr.update()
        return text, gr.update(value=paths, visible=True) if paths else gr.update()

    ckpt.change(describe, ckpt, info)
    start.click(on_start, [client, ckpt, temperature, steps, lockstep, autopilot], [client, player, info, status])
    steps.change(control_handler(hub, "steps"), [client, steps], status)
    refresh.click(lambda: gr.update(choices=choices()), None, ckpt)
    temperature.change(control_handler(hub, "temperature"), [client, temperature], status)
    lockstep.change(control_handler(hub, "lockstep"), [client, lockstep], status)
    record_data.change(control_handler(hub, "record_data"), [client, record_data], status)
    autopilot.change(control_handler(hub, "autopilot"), [client, autopilot], status)
    pause.click(control_handler(hub, "pause"), client, status)
    step.click(control_handler(hub, "step"), client, status)
    reset.click(control_handler(hub, "reset"), client, status)
    record.click(on_record, client, [status, files])
    return {"checkpoint": ckpt, "refresh": lambda: gr.update(choices=choices())}
