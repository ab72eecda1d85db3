"""The Learn tab's live controls built on the player component and `wm_core.Session`: a world model beside the
real env (1), "which is real?" (6), planning with ghost rollouts (8) and the families on one key stream (9)."""

from __future__ import annotations

import random
from typing import Any

import gradio as gr
import numpy as np
import torch

import wm_core

from .context import AppContext, keymap_markdown
from .hub import SessionHub, friendly
from .lesson_views import Control, big, picker, shipped_path
from .player import player

GHOST_STEPS = 6  # imagined steps drawn per root action in the planning lesson
PLAN_IDLE_SECONDS = 600.0  # the planning page does not tick: its episode is released 10 minutes after the last move


def _start_button(elem_id: str) -> gr.Button:
    return gr.Button("Start", variant="primary", scale=0, min_width=120, elem_id=elem_id)


# ---- 1. what a world model is -------------------------------------------------------------------------------
def side_by_side(ctx: AppContext, name: str) -> Control:
    """The real env and the dream on one key stream; the dream starts from real frames, then runs alone."""
    hub = SessionHub(data_dir=ctx.play_data, batcher=ctx.batcher, device=ctx.device)
    with gr.Row():
        run = picker(ctx, name, "Model", "wm-learn-world-run")
        start = _start_button("wm-learn-world-start")
    info = gr.Markdown("")
    live = player(hub, "wm-learn-world", "Press Start, click the frames and hold the keys.")
    client = gr.State("")

    def on_start(cid: str, path: str | None):
        cid = cid or hub.new_client()
        if not path:
            return cid, cid, "Pick a checkpoint."
        try:
            s = hub.start(cid, path, real=True)
        except Exception as e:
            return cid, cid, f"**Could not start:** {friendly(e)}"
        return cid, cid, f"Real env on the left, the dream on the right.  \n{keymap_markdown(s.metas[0])}"

    start.click(on_start, [client, run], [client, live, info])
    return Control([run], [live, info], ["", ""])


# ---- 6. which is real? ----------------------------------------------------------------------------------------
def score_line(score: dict[str, int]) -> str:
    """The running score of the blind game."""
    n, right = score.get("rounds", 0), score.get("right", 0)
    if not n:
        return "No rounds yet."
    return f"Score: {right} of {n} right — the dream fooled you {n - right} time{'s' * (n - right != 1)}."


def which_is_real(ctx: AppContext, name: str) -> Control:
    """Two unlabeled panes on one key stream, one the real env and one the dream: pick the real one."""
    hub = SessionHub(hold=True, batcher=ctx.batcher, device=ctx.device)
    with gr.Row():
        run = picker(ctx, name, "Model", "wm-learn-blind-run")
        start = gr.Button("New round", variant="primary", scale=0, min_width=140, elem_id="wm-learn-blind-start")
    with gr.Column(elem_classes=["wm-blindgame"], elem_id="wm-learn-blind-wrap") as wrap:
        live = player(hub, "wm-learn-blind", "Press New round, click a pane and play for a few seconds.")
    with gr.Row():
        left = gr.Button("Left is real", elem_id="wm-learn-blind-left")
        right = gr.Button("Right is real", elem_id="wm-learn-blind-right")
    verdict = gr.Markdown("No rounds yet.", elem_id="wm-learn-blind-verdict")
    client, game = gr.State(""), gr.State({})

    def on_start(cid: str, path: str | None, g: dict):
        cid = cid or hub.new_client()
        g = {**(g or {}), "real_side": None}
        if not path:
            return cid, cid, g, gr.update(), "Pick a checkpoint."
        try:
            hub.start(cid, path)
        except Exception as e:
            return cid, cid, g, gr.update(), f"**Could not start:** {friendly(e)}"
        g["real_side"] = random.choice(["left", "right"])  # the real env's pane is first unless swapped
        classes = ["wm-blindgame"] + (["wm-swap"] if g["real_side"] == "right" else [])
        return cid, cid, g, gr.update(elem_classes=classes), "Play a few seconds, then say which pane is real."

    def on_guess(side: str, g: dict):
        g = dict(g or {})
        truth = g.get("real_side")
        if truth is None:
            return g, gr.update(), "Press New round first."
        g["rounds"], g["right"] = g.get("rounds", 0) + 1, g.get("right", 0) + (side == truth)
        g["real_side"] = None
        said = "Right: that was the real env." if side == truth else f"Fooled: the real env was on the {truth}."
        revealed = ["wm-swap"] if truth == "right" else []
        return g, gr.update(elem_classes=revealed), f"**{said}** The labels are back. {score_line(g)}"

    start.click(on_start, [client, run, game], [client, live, game, wrap, verdict])
    left.click(lambda g: on_guess("left", g), game, [game, wrap, verdict])
    right.click(lambda g: on_guess("right", g), game, [game, wrap, verdict])
    return Control(
        [run], [live, game, verdict, wrap], ["", {}, "No rounds yet.", gr.update(elem_classes=["wm-blindgame"])]
    )


# ---- 8. planning -----------------------------------------------------------------------------------------
def faint(frames: np.ndarray, amount: float = 0.55) -> np.ndarray:
    """Frames washed toward white: the ghost look of futures the planner only imagined."""
    return (frames.astype(np.float32) * (1 - amount) + 255 * amount).astype(np.uint8)


def ghosts(session: wm_core.Session, chosen: int) -> tuple[np.ndarray, list[str]]:
    """From the real env's recent frames, one imagined rollout per first action (then the policy head's greedy
    choice), drawn faint except the planner's choice; and a line per rollout with its predicted rewards and the
    value the model predicts at its end."""
    model, spec = session.model, session.spec
    frames = np.stack([f for f, _ in session.recent])
    acts = np.stack([a for _, a in session.recent])
    dream = wm_core.Dream(model, temperature=0.0, seed=0)
    dream.reset(np.repeat(frames[None], spec.n, 0), np.repeat(acts[None], spec.n, 0))
    action = np.arange(spec.n)
    rows, ret = [], np.zeros(spec.n)
    for _ in range(GHOST_STEPS):
        frame, reward, _, _ = dream.step(action)
        rows.append(frame)
        ret += reward
        policy, _ = model.policy_value(dream.state)
        action = policy.argmax(-1).cpu().numpy()
    _, value = model.policy_value(dream.state)
    strip = np.stack(rows, 1)  # (actions, steps, S, S, 3)
    names = spec.names or tuple(f"action {i}" for i in range(spec.n))
    lines, out = [], []
    for i in range(spec.n):
        row = np.concatenate(list(strip[i]), axis=1)
        out.append(row if i == chosen else faint(row))
        mark = " ← chosen" if i == chosen else ""
        end = f"then value {float(value[i]):.1f}"
        lines.append(f"row {i + 1}: first {names[i]}, imagined reward {ret[i]:.1f}, {end}{mark}")
    return big(np.concatenate(out, axis=0), 2), lines


def plan_move(session: wm_core.Session) -> tuple[Any, float, np.ndarray, list[str]]:
    """The planner's move from the real env's recent frames, with its ghost rollouts: (action, search ms,
    ghost strip, one line per rollout)."""
    frames = np.stack([f for f, _ in session.recent])
    acts = np.stack([a for _, a in session.recent])
    with torch.inference_mode():
        filtered = wm_core.Dream(session.model, temperature=0.0, seed=0)
        filtered.reset(frames, acts)
        action, ms = session.agent(filtered.state)
        strip, lines = ghosts(session, int(action))
    return action, ms, strip, lines


def planning(ctx: AppContext, name: str) -> Control:
    """The planner acts in the real env one move at a time, its imagined futures drawn beside the real frame. The
    episode is a hub session (the shared batcher, the app's device, released when the page goes quiet)."""
    hub = SessionHub(hold=True, batcher=ctx.batcher, device=ctx.device, idle_seconds=PLAN_IDLE_SECONDS)
    with gr.Row():
        run = picker(ctx, name, "Model with a planner (MCTS: a muzero run)", "wm-learn-plan-run")
        start = gr.Button("New episode", variant="primary", scale=0, min_width=140, elem_id="wm-learn-plan-start")
        move = gr.Button("Plan one move", scale=0, min_width=160, elem_id="wm-learn-plan-move")
    with gr.Row():
        real = gr.Image(label="Real env", type="numpy", interactive=False, elem_id="wm-learn-plan-real", scale=1)
        ghost = gr.Image(label="Imagined futures, one row per first action", type="numpy", interactive=False,
                         elem_id="wm-learn-plan-ghosts", scale=3)  # fmt: skip
    note = gr.Markdown("", elem_id="wm-learn-plan-note")
    state = gr.State(None)

    def on_start(g: dict[str, Any] | None, path: str | None):
        cid = (g or {}).get("client") or hub.new_client()
        if not path:
            return None, None, None, "Pick a checkpoint."
        try:
            s = hub.start(cid, path, temperature=0.0)
            if s.agent is None or not isinstance(s.model, wm_core.Searchable) or not s.spec.discrete:
                hub.release(cid)
                raise ValueError(f"{s.meta['family']} has no search planner over discrete actions: pick a muzero run")
        except Exception as e:
            return None, None, None, f"**Could not start:** {friendly(e)}"
        return {"client": cid, "moves": 0, "ret": 0.0}, big(s.frame.real), None, f"Planner: {s.driver_label}."

    def on_move(g: dict[str, Any] | None):
        seat = hub.get(g["client"]) if g else None
        if seat is None:
            gone = "This episode was let go after minutes without a move: press New episode."
            return None, None, None, gone if g else "Press New episode first."
        with seat.lock:
            return move_on(seat.session, g)

    def move_on(s: wm_core.Session, g: dict[str, Any]):
        if s.frame.real_ended:
            return g, big(s.frame.real), None, f"The episode ended after {g['moves']} moves (return {g['ret']:.0f})."
        try:
            action, ms, strip, lines = plan_move(s)
            f = s.step(action)
        except Exception as e:
            return g, big(s.frame.real), None, f"**Could not plan this move:** {friendly(e)}"
        g = {**g, "moves": g["moves"] + 1, "ret": g["ret"] + f.real_reward}
        text = f"Move {g['moves']} ({ms:.0f} ms of search), real return {g['ret']:.0f}.  \n" + "  \n".join(lines)
        return g, big(f.real), strip, text

    start.click(on_start, [state, run], [state, real, ghost, note])
    move.click(on_move, state, [state, real, ghost, note])
    return Control([run], [state, real, ghost, note], [None, None, None, ""])


# ---- 9. pixels, latents or values ---------------------------------------------------------------------------
def families(ctx: AppContext, name: str) -> Control:
    """Several families of one env on one key stream, decoder-free ones through their probe."""
    hub = SessionHub(hold=True, batcher=ctx.batcher, device=ctx.device)
    default = [p for p in (shipped_path(ctx, n) for n in name.split("+")) if p]
    with gr.Row():
        runs = gr.Dropdown(choices=ctx.checkpoints(), value=default, multiselect=True, scale=4,
                           label="Models of one env (up to 4)", elem_id="wm-learn-fam-runs")  # fmt: skip
        start = _start_button("wm-learn-fam-start")
    info = gr.Markdown("")
    live = player(hub, "wm-learn-fam", "Press Start, click a frame and hold the keys.")
    client = gr.State("")

    def on_start(cid: str, paths: list[str] | None):
        cid = cid or hub.new_client()
        why = wm_core.compare_problem([wm_core.read_meta(p) for p in paths or []])
        if why:
            return cid, cid, f"**{why}**"
        try:
            s = hub.start(cid, list(paths))
        except Exception as e:
            return cid, cid, f"**Could not start:** {friendly(e)}"
        return cid, cid, keymap_markdown(s.metas[0])

    start.click(on_start, [client, runs], [client, live, info])
    return Control([runs], [live, info], ["", ""])


LIVE_CONTROLS = {1: side_by_side, 6: which_is_real, 8: planning, 9: families}
