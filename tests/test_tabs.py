"""The tab contract: every tab is a TabSpec in `playground.app.TABS`; the app's CSS is the specs' CSS, and the
Room tab is a spec like the others (built only when the app serves a room, shown only to the instructor)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from gradio.helpers import special_args

from playground import CSS, Room, build_demo
from playground.app import BASE_CSS, TABS
from playground.context import TabSpec
from playground.learn_tab import CSS as LEARN_CSS
from playground.workshop import INSTRUCTOR

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints"


def tabs_of(demo: gr.Blocks) -> dict[str, gr.Tab]:
    return {b.id: b for b in demo.blocks.values() if isinstance(b, gr.Tab)}


def test_every_tab_is_a_spec_and_the_css_is_theirs() -> None:
    assert all(isinstance(spec, TabSpec) for spec in TABS)
    assert [spec.id for spec in TABS] == ["play", "compare", "inspect", "train", "learn", "room"]
    assert CSS == BASE_CSS + "".join(spec.css for spec in TABS) and LEARN_CSS in CSS


def test_the_room_tab_is_built_only_for_a_room_and_shown_only_to_the_instructor(tmp_path: Path) -> None:
    plain = tabs_of(build_demo(SHIPPED, tmp_path / "runs", slots=1))
    assert "room" not in plain and plain["play"].visible
    demo = build_demo(SHIPPED, tmp_path / "runs", room=Room("a-token-for-tests", 2, tmp_path / "runs"), slots=1)
    room = tabs_of(demo)["room"]
    assert room.visible is False  # until a page load says who is looking
    loads = [f for f in demo.fns.values() if any(t[1] == "load" for t in f.targets) and room in f.outputs]
    assert len(loads) == 1
    show = loads[0].fn
    visible = lambda user: show(*special_args(show, [], gr.Request(username=user))[0])["visible"]  # noqa: E731
    assert visible(INSTRUCTOR) is True and visible("p01") is False
