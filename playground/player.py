"""The live player: one component the Play and Compare tabs (and lessons) embed. It holds the keys in the
browser, runs a paced frame loop (one request in flight, ~32 Hz) against the tab's `SessionHub` through a
server function, and paints the real env and every dream panel into canvases scaled up without blur. Its value
is the browser client id: set it (from a Start handler) to start the loop on that client's session."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from .hub import SessionHub, tick_server_function

STATIC = Path(__file__).parent / "static"

PLAYER_HTML = """
<div class="wm-player" data-client="${value}">
  <div class="wm-head">
    <span class="wm-status">%(note)s</span>
    <span class="wm-meta">step <b class="wm-step">0</b> · frames/s <b class="wm-fps">0</b> ·
      key→frame <b class="wm-latency">–</b> · driver <b class="wm-driver">you</b></span>
  </div>
  <div class="wm-panels">
    <div class="wm-panel wm-real-panel">
      <div class="wm-label">real env (same keys)</div>
      <canvas class="wm-real" width="64" height="64" tabindex="0"></canvas>
      <div class="wm-rows">
        <span>reward</span><b class="wm-real-reward">0.00</b>
        <span>return</span><b class="wm-real-return">0.0</b>
        <span>episode</span><b class="wm-real-state">–</b>
      </div>
    </div>
  </div>
  <canvas class="wm-spark" width="220" height="40" title="the first dream's predicted rewards"></canvas>
</div>
"""


def player(hub: SessionHub, elem_id: str, note: str = "Pick a checkpoint above and press Start.") -> gr.HTML:
    """The player component inside the current Blocks, ticking `hub`'s sessions; its value is the client id."""
    return gr.HTML(
        value="",
        html_template=PLAYER_HTML % {"note": note},
        css_template=(STATIC / "player.css").read_text(),
        js_on_load=(STATIC / "player.js").read_text(),
        server_functions=[tick_server_function(hub)],
        elem_id=elem_id,
    )
