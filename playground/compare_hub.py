"""The Compare tab's controller, free of gradio: one CompareSession per browser client (the client and
eviction machinery is PlayHub's, from `ClientHub`), its frame loop, controls and "dream from here".
"""

from __future__ import annotations

from typing import Any

import wm_core

from .hub import ClientHub, Seat, b64_frame

CompareSeat = Seat[wm_core.CompareSession]


class CompareHub(ClientHub[CompareSeat]):
    """Every browser client's compare session, created on demand and dropped when idle."""

    def start(self, client: str, runs: list[str], *, temperature: float = 1.0) -> wm_core.CompareSession:
        """Open `runs` (1-4 checkpoints of one env) for `client`, all started from one real context."""
        session = wm_core.CompareSession(runs, temperature=temperature)
        session.reset()
        self._seat(client, CompareSeat(session))
        return session

    def tick(self, client: str, keys: list[str]) -> dict[str, Any]:
        """One frame for the browser loop: step everything with the held keys unless paused, and report."""
        p = self.get(client)
        if p is None:
            return {"ok": False, "message": "Pick checkpoints of one env above and press Start to compare."}
        with p.lock:
            s = p.session
            f = s.frame if p.paused else s.tick(keys)
            return {
                "ok": True,
                "size": int(f.real.shape[0]),
                "step": f.step,
                "real": b64_frame(f.real),
                "real_reward": f.real_reward,
                "real_ret": f.real_ret,
                "real_ended": f.real_ended,
                "paused": p.paused,
                "waiting": not p.paused and not f.real_ended and s.waiting(keys),
                "resets": s.resets,
                "temperature": s.temperature,
                "panels": [
                    {
                        "label": label,
                        "frame": b64_frame(q.frame),
                        "reward": q.reward,
                        "ret": q.ret,
                        "done_prob": q.done_prob,
                        "ended": q.ended,
                        "divergence": q.divergence,
                        "extras": q.extras,
                    }
                    for label, q in zip(s.labels, f.panels)
                ],
            }

    def control(self, client: str, action: str, value: Any = None) -> str:
        """Pause / reset / temperature / steps; returns a status line."""
        p = self.get(client)
        if p is None:
            return "Start a comparison first."
        with p.lock:
            s = p.session
            if action == "pause":
                p.paused = not p.paused
                return "paused" if p.paused else "playing"
            if action == "reset":
                s.reset()
                return "new real context for every model"
            if action == "temperature":
                s.temperature = float(value)
                return f"temperature {s.temperature:.2f}"
            if action == "steps":
                n = s.set_sampling_steps(int(value))
                return (
                    f"{int(value)} sampling steps per frame for {n} pixel-space model(s)"
                    if n
                    else ("none of these families has sampling steps (each draws a frame in one pass)")
                )
        raise ValueError(f"unknown control '{action}'")

    def dream_from_here(
        self, client: str, samples: int, horizon: int, seed: int | None = None
    ) -> tuple[str, wm_core.Futures | None]:
        """Pause the client's comparison and dream `samples` futures per model from the frozen real state;
        returns a status line and the futures (None before Start)."""
        p = self.get(client)
        if p is None:
            return "Start a comparison first.", None
        with p.lock:
            futures = p.session.dream_from_here(samples=int(samples), horizon=int(horizon), seed=seed)
            p.paused = True
        n, H = len(futures.real), futures.horizon
        ended = f"; the real episode ends after {n} of them" if n < H else ""
        return (
            f"paused: {futures.samples} dreams per model for {H} steps of random actions (seed {futures.seed}) "
            f"from the frozen real frame{ended}. Press Pause to play on.",
            futures,
        )
