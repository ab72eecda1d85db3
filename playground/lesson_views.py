"""The Learn tab's live controls that draw views of a model rather than a live player: compression (2),
compounding error (3), temperature (4), "does it listen?" (5) and reading a card (10). Each builder lays out its
components inside the current Blocks and returns a `Control`; the models and held-out episodes come through
`wm_core`'s public API."""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

import wm_core

from .context import AppContext
from .hub import SessionHub, friendly
from .inspector import saved_report
from .widgets import Slider

SLIDERS = 6  # latent directions in the compression lesson


@dataclass
class Control:
    """What a lesson's control hands back: its checkpoint lists (refreshed after training) and what "reset
    this lesson" puts back into which components."""

    checkpoint_lists: list[gr.components.Component] = field(default_factory=list)
    reset_outputs: list[gr.components.Component] = field(default_factory=list)
    defaults: list[Any] = field(default_factory=list)

    def reset_values(self) -> list[Any]:
        """The values "reset this lesson" puts back (a player's empty value stops its frame loop)."""
        return list(self.defaults)


def shipped_path(ctx: AppContext, name: str) -> str | None:
    """The listed path of the checkpoint folder `name` (shipped first), or None when it is missing."""
    return next((path for _, path in ctx.checkpoints() if Path(path).name == name), None)


def picker(ctx: AppContext, name: str, label: str, elem_id: str) -> gr.Dropdown:
    """A checkpoint list defaulting to the shipped `name`: the learner may swap in their own run."""
    return gr.Dropdown(choices=ctx.checkpoints(), value=shipped_path(ctx, name), label=label, elem_id=elem_id)


@functools.lru_cache(maxsize=8)
def lesson_episodes(env_id: str, episodes: int = 4, max_steps: int = 150) -> tuple[wm_core.Episode, ...]:
    """A few held-out episodes of `env_id` played by its scripted policy (long enough to dream over), collected
    once per process into a temp directory that goes once they are in memory."""
    with tempfile.TemporaryDirectory(prefix="wm-learn-") as root:
        store = wm_core.heldout_store(env_id, episodes, Path(root) / "store", max_steps=max_steps, policy="scripted")
        return tuple(store.load(i) for i in range(len(store)))


def big(frame: np.ndarray, scale: int = 4) -> np.ndarray:
    """Upscale without blur."""
    return frame.repeat(scale, 0).repeat(scale, 1)


def card_of(run: str) -> wm_core.ModelCard:
    """The report `wm eval` saved beside `run`; a ValueError saying how to make one when there is none."""
    path = Path(wm_core.read_meta(run)["_dir"]) / "report.json"
    if not path.is_file():
        raise ValueError(f"{Path(run).name} has no saved card yet: run `wm eval {run}` or press Evaluate in Inspect")
    return wm_core.ModelCard.load(path)


# ---- 2. compression -------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _explorer(run: str) -> wm_core.LatentExplorer:
    model, meta = wm_core.cached_model(run)
    if not model.capabilities.latent:
        raise ValueError(f"{meta['family']} keeps frames, not a latent: pick an ha, dreamer, muzero or jepa run")
    return wm_core.LatentExplorer(model, lesson_episodes(meta["env_id"]), components=SLIDERS)


def compression(ctx: AppContext, name: str) -> Control:
    """A real frame beside its reconstruction through the latent, and sliders along the latent's main directions."""
    run = picker(ctx, name, "Model (a VAE-style latent works best: ha)", "wm-learn-compress-run")
    with gr.Row():
        t = Slider(0, 100, value=10, step=1, label="Moment in the episode (frame)", elem_id="wm-learn-compress-t")
        go = gr.Button("Show", variant="primary", scale=0, min_width=120, elem_id="wm-learn-compress-go")
    with gr.Row():
        real = gr.Image(label="Real frame", type="numpy", interactive=False, elem_id="wm-learn-compress-real")
        decoded = gr.Image(label="Through the latent", type="numpy", interactive=False, elem_id="wm-learn-compress-dec")
    sliders = [Slider(-3, 3, value=0, step=0.25, label=f"Direction {i + 1}") for i in range(SLIDERS)]
    note = gr.Markdown("")

    def draw(path: str | None, moment: float, *offsets: float):
        if not path:
            return None, None, "Pick a checkpoint."
        try:
            ex = _explorer(path)
            e = ex.episodes[0]
            k = int(np.clip(moment, 0, len(e) - 1))
            frame = ex.frame(0, k, list(offsets))
        except Exception as e:
            return None, None, f"**Cannot draw this model's latent:** {friendly(e)}"
        spread = ", ".join(f"{100 * x:.0f}%" for x in ex.explained)
        return (
            big(e.obs[k]),
            big(frame),
            f"Frame {k} of {len(e) - 1}. Share of the latent's spread per direction: {spread}",
        )

    inputs = [run, t, *sliders]
    go.click(draw, inputs, [real, decoded, note])
    for comp in sliders + [t]:
        comp.release(draw, inputs, [real, decoded, note])
    return Control([run], [t, *sliders], [10] + [0] * SLIDERS)


# ---- 3. compounding error ---------------------------------------------------------------------------------
def error_plot(card: wm_core.ModelCard, horizon: int) -> Any:
    """PSNR against horizon for the model and the two baselines, from the saved card, with the slider's k marked."""
    import matplotlib.pyplot as plt

    c = card.curves
    fig, ax = plt.subplots(figsize=(5.6, 3.2), dpi=90)
    for key, label, style in (("model", "the model", "-"), ("copy_last", "copy the last frame", "--"),
                              ("mean_frame", "draw the mean frame", ":")):  # fmt: skip
        ax.plot(c.k, getattr(c, key).psnr, style, label=label)
    ax.axvline(horizon, color="#888", lw=0.8)
    ax.set(xlabel="steps dreamed without seeing the real env (k)", ylabel="PSNR (dB, higher is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def compounding(ctx: AppContext, name: str) -> Control:
    """The open-loop grid up to a horizon slider, beside the card's error-against-horizon curves."""
    run = picker(ctx, name, "Model", "wm-learn-horizon-run")
    with gr.Row():
        k = Slider(1, 30, value=5, step=1, label="Horizon k (steps dreamed alone)", elem_id="wm-learn-horizon")
        go = gr.Button("Show", variant="primary", scale=0, min_width=120, elem_id="wm-learn-horizon-go")
    grid = gr.Image(label="Rows: real future · dream from the same 5 frames and actions · difference", type="numpy",
                    interactive=False, elem_id="wm-learn-horizon-grid")  # fmt: skip
    plot = gr.Plot(
        label="Error against horizon (the model's card, 50 held-out episodes)", elem_id="wm-learn-horizon-plot"
    )
    note = gr.Markdown("")

    def draw(path: str | None, horizon: float):
        if not path:
            return None, None, "Pick a checkpoint."
        try:
            model, meta = wm_core.cached_model(path)
            episode = max(lesson_episodes(meta["env_id"]), key=len)
            img = wm_core.open_loop_grid(model, episode, context=5, horizon=int(horizon), temperature=1.0, seed=0)
            fig = error_plot(card_of(path), int(horizon))
        except Exception as e:
            return None, None, f"**Cannot draw the open loop:** {friendly(e)}"
        return big(img, 3), fig, ""

    go.click(draw, [run, k], [grid, plot, note])
    k.release(draw, [run, k], [grid, plot, note])
    return Control([run], [k], [5])


# ---- 4. temperature ---------------------------------------------------------------------------------------
def temperature(ctx: AppContext, name: str) -> Control:
    """K futures sampled at a temperature from one real moment, as a filmstrip and their drift from reality. Each
    press opens a session from the hub (the shared batcher, the app's device) and releases it once drawn."""
    hub = SessionHub(batcher=ctx.batcher, device=ctx.device)
    run = picker(ctx, name, "Model", "wm-learn-temp-run")
    with gr.Row():
        tau = Slider(0.0, 2.0, value=1.0, step=0.05, label="Temperature τ", elem_id="wm-learn-tau")
        k = Slider(1, 6, value=4, step=1, label="Futures to sample (K)", elem_id="wm-learn-k")
        go = gr.Button("Sample K futures", variant="primary", scale=0, min_width=180, elem_id="wm-learn-sample")
    note = gr.Markdown("")
    strip = gr.Image(label="Top row: the real future · below: K dreams", type="numpy", interactive=False,
                     elem_id="wm-learn-temp-strip")  # fmt: skip
    plot = gr.Plot(label="How far each dream drifts from the real future", elem_id="wm-learn-temp-plot")
    client = gr.State("")

    def sample(cid: str, path: str | None, t: float, n: float):
        cid = cid or hub.new_client()
        if not path:
            return cid, "Pick a checkpoint.", None, None
        try:
            session = hub.start(cid, path, temperature=float(t), real=True)
            _, futures = hub.dream_from_here(cid, int(n), 15, seed=0)
        except Exception as e:
            return cid, f"**Cannot sample futures:** {friendly(e)}", None, None
        finally:
            hub.release(cid)  # the futures are drawn: the real env goes
        what = session.model.capabilities.temperature or "not described"
        text = (
            f"τ = {t:.2f}, same real moment and random actions for every sample. For {session.meta['family']}: {what}."
        )
        return cid, text, big(futures.filmstrip, 2), futures.figure

    go.click(sample, [client, run, tau, k], [client, note, strip, plot])
    return Control([run], [tau, k, strip, plot, note], [1.0, 4, None, None, ""])


# ---- 5. does it listen? -----------------------------------------------------------------------------------
def listen_rows(card: wm_core.ModelCard) -> list[str]:
    """The card's plain-PSNR and controllability numbers as table cells."""
    k5 = card.row(5)
    psnr = "n/a" if k5 is None else f"{k5.model.psnr:.1f} (copy {k5.copy_last.psnr:.1f}, mean {k5.mean_frame.psnr:.1f})"
    ctrl = card.controllability
    if ctrl is None:
        return [psnr, "n/a", "n/a", "no verdict"]
    d, idm = ctrl.delta, ctrl.inverse_dynamics
    delta = "n/a" if d.delta_psnr is None else f"{d.delta_psnr:+.2f} ± {d.stderr or 0:.2f} dB"
    if idm.ratio is None:
        real = "n/a" if idm.real is None else f"{idm.real:.2f}"
        chance = "n/a" if idm.chance is None else f"{idm.chance:.2f}"
        reader = f"n/a: the reader reads real frames at {real}, chance {chance}"
    else:
        reader = f"{idm.dream:.2f} on dreams vs {idm.real:.2f} on real ({100 * idm.ratio:.0f}%)"
    blind = {True: "**action-blind**", False: "answers its actions", None: "no verdict"}[ctrl.action_blind]
    return [psnr, delta, reader, blind]


def counterfactual_strip(path: str) -> tuple[np.ndarray, list[str]]:
    """Rows of dreamed frames from one real context under each action plan (always each action, random)."""
    model, meta = wm_core.cached_model(path)
    episode = max(lesson_episodes(meta["env_id"]), key=len)
    _, out = wm_core.counterfactuals(model, episode, meta["env_id"], wm_core.FramePipeline.from_json(meta["pipeline"]),
                                     horizon=10, temperature=0.0)  # fmt: skip
    pred = out["pred"][:, ::2]  # (plans, 5, S, S, 3): every other step
    rows = [np.concatenate(list(plan), axis=1) for plan in pred]
    return big(np.concatenate(rows, axis=0), 2), [str(n) for n in out["names"]]


def listen(ctx: AppContext, name: str) -> Control:
    """A model beside the same family trained with its actions zeroed: plain PSNR, ΔtPSNR, the action reader,
    and counterfactual pushes from one context."""
    with gr.Row():
        a = picker(ctx, name, "A model", "wm-learn-listen-a")
        b = picker(ctx, f"{name}-blind", "The same model trained deaf (actions zeroed)", "wm-learn-listen-b")
    go = gr.Button("Compare them", variant="primary", elem_id="wm-learn-listen-go")
    table = gr.Markdown("", elem_id="wm-learn-listen-table")
    with gr.Row():
        left = gr.Image(label="Model A: rows are action plans, 10 dreamed steps", type="numpy", interactive=False)
        right = gr.Image(label="Model B: the same plans", type="numpy", interactive=False)

    def compare(pa: str | None, pb: str | None):
        if not pa or not pb:
            return "Pick both checkpoints.", None, None
        try:
            ca, cb = card_of(pa), card_of(pb)
            (sa, names), (sb, _) = counterfactual_strip(pa), counterfactual_strip(pb)
        except Exception as e:
            return f"**Cannot compare:** {friendly(e)}", None, None
        head = "| | PSNR at k=5 (dB) | ΔtPSNR | action reader | verdict |\n|---|---|---|---|---|\n"
        rows = "".join(f"| {Path(p).name} | " + " | ".join(listen_rows(c)) + " |\n" for p, c in ((pa, ca), (pb, cb)))
        plans = "Strip rows, top to bottom: " + ", ".join(names) + "."
        return head + rows + "\n" + plans, sa, sb

    go.click(compare, [a, b], [table, left, right])
    return Control([a, b], [table, left, right], ["", None, None])


# ---- 7. learning inside the dream -------------------------------------------------------------------------
def controller_rows(run: str) -> list[tuple[str, np.ndarray, dict[str, Any]]]:
    """(name, params, record) of every controller saved under RUN/controllers, by temperature."""
    folder = Path(wm_core.read_meta(run)["_dir"]) / "controllers"
    found = [(p.name, *wm_core.load_controller(p)) for p in sorted(folder.glob("*/")) if p.is_dir()]
    return sorted(found, key=lambda row: row[2]["config"]["temperature"])


def controller_table(rows: list[tuple[str, np.ndarray, dict[str, Any]]]) -> str:
    """The dream-vs-real table of the saved controllers."""
    if not rows:
        return (
            "No controllers under this run yet: make them with "
            "`wm controller RUN --temperature T --out RUN/controllers/NAME`."
        )
    head = "| controller | trained at τ | return in the dream | return in the real env | CPU-min |\n"
    head += "|---|---|---|---|---|\n"
    body = "".join(
        f"| {name} | {r['config']['temperature']} | {r['dream_return']:.1f} | {r['real_return']['mean']:.1f} ± "
        f"{r['real_return']['std']:.1f} ({r['real_return']['episodes']} episodes) | {r['cpu_seconds'] / 60:.1f} |\n"
        for name, _, r in rows
    )
    return head + body + "\nMade by: " + " · ".join(f"`{r['command']}`" for _, _, r in rows)


def dream_controllers(ctx: AppContext, name: str) -> Control:
    """The controllers trained in the run's dream at a low and a high temperature: their dream and real returns,
    and a button to watch one drive the real env."""
    run = picker(ctx, name, "Model whose dream the controllers learned in", "wm-learn-ctrl-run")

    def table(path: str | None) -> str:
        try:
            return controller_table(controller_rows(path)) if path else "Pick a checkpoint."
        except Exception as e:
            return f"**Cannot read the controllers:** {friendly(e)}"

    text = gr.Markdown(table(run.value), elem_id="wm-learn-ctrl-table")
    with gr.Row():
        which = gr.Radio(["lowest τ", "highest τ"], value="lowest τ", label="Controller", elem_id="wm-learn-ctrl-which")
        watch = gr.Button("Watch it drive the real env", variant="primary", elem_id="wm-learn-ctrl-watch")
    real = gr.Image(label="The real env, driven by the controller", type="filepath", interactive=False,
                    elem_id="wm-learn-ctrl-real")  # fmt: skip
    note = gr.Markdown("", elem_id="wm-learn-ctrl-note")

    def on_watch(path: str | None, pick: str):
        try:
            rows = controller_rows(path) if path else []
            if not rows:
                return None, "No controllers to watch for this checkpoint."
            label, params, record = rows[0] if pick == "lowest τ" else rows[-1]
            seed = int(np.random.default_rng().integers(1000, 100_000))  # not one of the scored episodes' seeds
            ret, frames = wm_core.controller_episode(path, params, seed=seed)
            gif = Path(tempfile.mkdtemp(prefix="wm-learn-")) / f"{label}.gif"
            wm_core.write_video(gif, list(frames), scale=4, fps=30)
        except Exception as e:
            return None, f"**Cannot run the controller:** {friendly(e)}"
        tau = record["config"]["temperature"]
        return str(
            gif
        ), f"{label} (trained at τ = {tau}) drove the real env for {len(frames) - 1} steps: return {ret:.0f}."

    run.change(table, run, text)
    watch.click(on_watch, [run, which], [real, note])
    return Control([run], [real, note], [None, ""])


# ---- 10. reading a card ---------------------------------------------------------------------------------
def cards(ctx: AppContext, name: str) -> Control:
    """Two saved model cards side by side, with their playable-world bars."""
    good, weak = (name.split("+") + ["diffusion-pong"])[:2]

    def show(path: str | None) -> str:
        try:
            return saved_report(path)[0]
        except Exception as e:
            return f"Cannot read this card: {friendly(e)}"

    with gr.Row():
        with gr.Column():
            a = picker(ctx, good, "Card A", "wm-learn-card-a")
            ta = gr.Textbox(
                show(a.value), label="Card A", lines=24, elem_classes=["wm-mono"], elem_id="wm-learn-card-a-text"
            )
        with gr.Column():
            b = picker(ctx, weak, "Card B", "wm-learn-card-b")
            tb = gr.Textbox(
                show(b.value), label="Card B", lines=24, elem_classes=["wm-mono"], elem_id="wm-learn-card-b-text"
            )
    a.change(show, a, ta)
    b.change(show, b, tb)
    return Control([a, b])


VIEW_CONTROLS = {2: compression, 3: compounding, 4: temperature, 5: listen, 7: dream_controllers, 10: cards}
