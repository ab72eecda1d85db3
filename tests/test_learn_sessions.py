"""Lessons 4 (temperature) and 8 (planning) get their sessions from a SessionHub, as Play does, so the hub's reaper
and the shared step batcher see them; they once built `wm_core.Session`s of their own that nothing released."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import pytest

import wm_core
from playground import hub as hub_module
from playground.context import AppContext
from playground.learn_tab import CONTROLS

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints"


def click(demo: gr.Blocks, button: str, given: dict[Any, Any]) -> dict[Any, Any]:
    """Run what a click on the button `button` (an elem_id) runs, the way Gradio would: each input takes its value
    from `given` (keyed by elem_id or component), else its current value. Returns the outputs by component."""
    ids = {i for i, b in demo.blocks.items() if getattr(b, "elem_id", None) == button}
    f = next(f for f in demo.fns.values() if any(t[0] in ids for t in f.targets))
    values = [given.get(c, given.get(getattr(c, "elem_id", None), getattr(c, "value", None))) for c in f.inputs]
    out = f.fn(*values)
    return dict(zip(f.outputs, out if isinstance(out, (tuple, list)) else (out,)))


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Every Session opened, and those a hub opened (and so can reap, batch and release)."""
    seen: dict[str, list] = {"all": [], "hub": []}
    real_session, real_start = wm_core.Session, hub_module.SessionHub.start

    def session(*args: Any, **kwargs: Any) -> wm_core.Session:
        s = real_session(*args, **kwargs)
        seen["all"].append(s)
        return s

    def start(self: hub_module.SessionHub, *args: Any, **kwargs: Any) -> wm_core.Session:
        s = real_start(self, *args, **kwargs)
        seen["hub"].append(s)
        return s

    monkeypatch.setattr(wm_core, "Session", session)
    monkeypatch.setattr(hub_module.SessionHub, "start", start)
    return seen


def text_of(out: dict[Any, Any]) -> str:
    return " ".join(v for c, v in out.items() if isinstance(c, gr.Markdown) and isinstance(v, str))


@pytest.mark.skipif(not (SHIPPED / "ha-cartpole").is_dir(), reason="the shipped checkpoints are not here")
def test_the_temperature_lesson_samples_from_a_hub_session(sessions: dict[str, list]) -> None:
    with gr.Blocks() as demo:
        CONTROLS[4](AppContext(SHIPPED, Path("unused-runs")), "ha-cartpole")
    out = click(demo, "wm-learn-sample", {"wm-learn-temp-run": str(SHIPPED / "ha-cartpole"), "wm-learn-k": 2})
    assert "τ = 1.00" in text_of(out), out
    assert sessions["all"] and sessions["all"] == sessions["hub"], "a lesson opened a session outside the hub"


@pytest.mark.skipif(not (SHIPPED / "muzero-cartpole-agent").is_dir(), reason="the shipped checkpoints are not here")
def test_the_planning_lesson_plays_a_hub_session(sessions: dict[str, list]) -> None:
    with gr.Blocks() as demo:
        CONTROLS[8](AppContext(SHIPPED, Path("unused-runs")), "muzero-cartpole-agent")
    out = click(demo, "wm-learn-plan-start", {"wm-learn-plan-run": str(SHIPPED / "muzero-cartpole-agent")})
    assert "Planner" in text_of(out), out
    out = click(demo, "wm-learn-plan-move", out)  # the page's state after New episode
    assert "Move 1" in text_of(out) and "chosen" in text_of(out), out
    assert sessions["all"] and sessions["all"] == sessions["hub"], "a lesson opened a session outside the hub"
