"""Inspect tab: the model card of one checkpoint on held-out episodes, its figures, and the latent explorer.
Picking a checkpoint shows the report `wm eval` saved beside it; Evaluate recomputes it here (the same
function, episodes and seed give the same numbers) with figures for any episode and horizon.
"""

from __future__ import annotations

import gradio as gr

from .context import AppContext, Tab, TabSpec
from .hub import friendly, whole_number
from .inspector import Inspection, saved_report
from .widgets import Slider

EXPLORER_SLIDERS = 6
FIGURES = (
    "open_loop",
    "reward_end",
    "curves",
    "controllability",
    "latent",
    "counterfactual",
    "state_probe",
    "coverage",
)


def _image(label: str, elem_id: str) -> gr.Image:
    return gr.Image(label=label, type="numpy", interactive=False, elem_id=elem_id, buttons=["download"], format="png")


def _big(frame, scale: int = 4):
    """Upscale a small frame without blur, so the page shows pixels rather than a smudge."""
    return frame.repeat(scale, 0).repeat(scale, 1)


def _figures() -> dict[str, gr.Image]:
    """The figure panes, with their headings."""
    gr.Markdown("### Open loop\nRows: real frames, the model's predictions after the context, and their difference.")
    figs = {"open_loop": _image("Open-loop grid", "wm-fig-open_loop")}
    figs["reward_end"] = _image("Predicted vs real reward and episode end", "wm-fig-reward_end")
    gr.Markdown("### Error vs horizon\nThe model beside two baselines that need no model: copy the last real frame, "
                "and the training data's mean frame. Foreground MSE scores only pixels that differ from the mean "
                "frame, so drawing the background alone earns nothing.")  # fmt: skip
    figs["curves"] = _image("Frame error vs horizon", "wm-fig-curves")
    gr.Markdown("### Does the dream listen to you?\nΔtPSNR: PSNR against the real future with the logged actions "
                "minus with random ones from the same context (> 0: the dream follows its actions). Inverse "
                "dynamics: a small classifier learns from real frames which action led to a frame, then reads the "
                "dreamed frames; near its real-frame score means the dream shows the actions as clearly as "
                "reality.")  # fmt: skip
    figs["controllability"] = _image("Controllability", "wm-fig-controllability")
    figs["latent"] = _image("Latent error vs horizon (families with a latent)", "wm-fig-latent")
    gr.Markdown("### Counterfactual actions\nOne real context, several action plans: does the dream answer "
                "the actions the way the real env (replayed from the same seed) does?")  # fmt: skip
    figs["counterfactual"] = _image("Dreamed and real futures per plan", "wm-fig-counterfactual")
    gr.Markdown("### What the latent holds, and what the data covered")
    figs["state_probe"] = _image("Linear state probe", "wm-fig-state_probe")
    figs["coverage"] = _image("Action coverage of the training data", "wm-fig-coverage")
    return figs


def _explorer() -> dict:
    """The latent explorer's controls and views."""
    gr.Markdown("### Latent explorer\nFreeze the model's state at step t of a held-out episode, then move it along "
                "the top principal directions of its latent (1 = one standard deviation of real frames) and "
                "watch the decoded frame change.")  # fmt: skip
    ex = {}
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            ex["t"] = Slider(0, 100, 5, step=1, label="Freeze at step t", elem_id="wm-explore-t")
            ex["sliders"] = [
                Slider(-3.0, 3.0, 0.0, step=0.1, label=f"direction {i + 1}", elem_id=f"wm-explore-pc{i}")
                for i in range(EXPLORER_SLIDERS)
            ]
            ex["zero"] = gr.Button("Back to the frozen state", elem_id="wm-explore-zero")
        with gr.Column(scale=1):
            with gr.Row():
                ex["real"] = gr.Image(label="real frame at t", type="numpy", interactive=False, height=230,
                                      format="png", elem_id="wm-explore-real")  # fmt: skip
                ex["frame"] = gr.Image(label="decoded, moved", type="numpy", interactive=False, height=230,
                                       format="png", elem_id="wm-explore-frame")  # fmt: skip
            ex["info"] = gr.Markdown("", elem_id="wm-explore-info")
    return ex


def evaluate(run: str | None, n: float | None, s: float | None, temp: float, ep: float, hz: float):
    """Evaluate on held-out episodes (a generator: a progress line first)."""
    blank = (None, "", None, None, *[None] * len(FIGURES), gr.update(), gr.update())
    if not run:
        yield ("**Pick a checkpoint first.**", *blank)
        return
    try:
        episodes = whole_number(n, "Held-out episodes", 10, 500, blank=50)
        seed = whole_number(s, "Sampling seed", 0, 2**31 - 1, blank=0)
    except ValueError as e:
        yield (f"**Cannot evaluate:** {e}", *blank)
        return
    yield (f"Evaluating on {episodes} held-out episodes…", *blank)
    try:
        ins = Inspection(run, episodes=episodes, seed=seed, temperature=float(temp))
        fig = ins.figures(ins.longest, int(hz))
        paths = ins.files()
    except Exception as e:  # shown as one line; never a traceback in the page
        yield (f"**Could not evaluate:** {friendly(e)}", *blank)
        return
    ho = ins.card.heldout
    note = (f"Evaluated on {ho.episodes} held-out episodes ({ho.frames} frames, seeds from {ho.seed}), "
            f"sampling seed {ins.card.seed}, temperature {ins.card.temperature}.")  # fmt: skip
    yield (note, ins, ins.text(), None, paths, *[fig[k] for k in FIGURES],
           gr.update(maximum=len(ins.episode_lengths) - 1, value=ins.longest),
           gr.update(maximum=max(len(e) for e in ins.report.episodes) - 1))  # fmt: skip


def show_saved(run: str | None):
    """The report saved beside the checkpoint: card text, report.png, files."""
    try:
        text, png, files = saved_report(run)
    except Exception as e:
        return f"**{friendly(e)}**", None, None, None
    note = "The report saved beside this checkpoint; Evaluate recomputes it here." if files else ""
    return note, text, png, files or None


def explore(ins: Inspection | None, ep: float, t: float, *offsets: float):
    """The explorer's views for the frozen state moved by `offsets`."""
    if ins is None:
        return None, None, "Press Evaluate first."
    try:
        r = ins.explore(int(ep), int(t), list(offsets))
    except Exception as e:
        return None, None, f"**{friendly(e)}**"
    coords = ", ".join(f"{c:+.2f}" for c in r["coordinates"])
    share = ", ".join(f"{x}%" for x in r["explained"])
    probe = " (probe view: what the latent knows)" if r["decoded_by"] == "probe" else ""
    text = (f"Episode {r['episode']}, step {r['t']}; frame from the {r['decoded_by']}{probe}.  \n"
            f"The frozen state sits at ({coords}) along the directions, which hold {share} of the latent's "
            "variance.")  # fmt: skip
    return _big(r["real"]), _big(r["decoded"]), text


def build_inspect_tab(ctx: AppContext) -> Tab:
    """Build the Inspect tab inside the current Blocks."""
    gr.Markdown(
        "The model card of a checkpoint on **held-out** episodes (env seeds never used for training): where its "
        "open-loop dream drifts from reality, whether it answers actions, what its latent holds and which actions "
        "its training data covered. `wm eval RUN --episodes N --seed S` prints the same numbers."
    )
    with gr.Row():
        ckpt = gr.Dropdown(choices=ctx.checkpoints(), value=ctx.first_checkpoint(), label="Checkpoint", scale=4,
                           elem_id="wm-inspect-checkpoint")  # fmt: skip
        # No `precision`: Gradio would round 2.5 to 2 without a word; `whole_number` refuses it instead.
        episodes = gr.Number(50, label="Held-out episodes", minimum=10, maximum=500, scale=1,
                             elem_id="wm-inspect-episodes")  # fmt: skip
        seed = gr.Number(0, label="Sampling seed", scale=1, elem_id="wm-inspect-seed")
        temperature = Slider(0.0, 2.0, 1.0, step=0.05, label="Temperature", scale=2, elem_id="wm-inspect-temp")
        run_btn = gr.Button("Evaluate", variant="primary", scale=0, min_width=120, elem_id="wm-inspect-run")
    note, text, png, saved = show_saved(ctx.first_checkpoint())  # the page opens on the saved report
    status = gr.Markdown(note, elem_id="wm-inspect-status")
    state = gr.State(None)
    with gr.Row(equal_height=False):
        card_text = gr.Textbox(text, label="Model card (as `wm eval` prints it)", lines=18, max_lines=40, scale=3,
                               interactive=False, elem_id="wm-inspect-card", elem_classes="wm-mono")  # fmt: skip
        files = gr.File(saved, label="report.json + report.png", file_count="multiple", elem_id="wm-inspect-files",
                        scale=1)  # fmt: skip
    saved_png = gr.Image(png, label="The saved report (report.png)", type="filepath", interactive=False,
                         elem_id="wm-inspect-saved", buttons=["download"])  # fmt: skip
    with gr.Row():
        episode = Slider(0, 49, 0, step=1, label="Held-out episode", elem_id="wm-inspect-episode")
        horizon = Slider(1, 50, 15, step=1, label="Horizon H (predicted frames shown)", elem_id="wm-inspect-horizon")
    figs = _figures()
    ex = _explorer()
    views = [ex["real"], ex["frame"], ex["info"]]
    explorer_inputs = [state, episode, ex["t"], *ex["sliders"]]
    outputs = [status, state, card_text, saved_png, files, *[figs[k] for k in FIGURES], episode, ex["t"]]
    run_btn.click(evaluate, [ckpt, episodes, seed, temperature, episode, horizon], outputs).then(
        explore, explorer_inputs, views
    )
    ckpt.change(show_saved, ckpt, [status, card_text, saved_png, files])

    def refigure(ins: Inspection | None, ep: float, hz: float):
        if ins is None:
            return gr.update(), gr.update()
        fig = ins.figures(int(ep), int(hz))
        return fig["open_loop"], fig["reward_end"]

    # "always_last": while a slider moves, only the newest value is drawn once the previous draw is done.
    for control in (episode, horizon):
        control.change(refigure, [state, episode, horizon], [figs["open_loop"], figs["reward_end"]],
                       trigger_mode="always_last")  # fmt: skip
    for control in (episode, ex["t"], *ex["sliders"]):
        control.change(explore, explorer_inputs, views, trigger_mode="always_last")
    ex["zero"].click(lambda: [0.0] * EXPLORER_SLIDERS, None, ex["sliders"]).then(explore, explorer_inputs, views)
    return Tab(checkpoint_lists=[ckpt])


INSPECT = TabSpec("Inspect", "inspect", build_inspect_tab)
