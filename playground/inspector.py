"""The Inspect tab's controller, free of gradio: one evaluated checkpoint with its figures, report files and
latent explorer. The numbers come from `wm_core.evaluate_checkpoint`, the function behind `wm eval`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import wm_core


class Inspection:
    """A checkpoint evaluated on held-out episodes: card text, figures, report files, latent explorer."""

    def __init__(self, run: str, *, episodes: int = 50, seed: int = 0, temperature: float = 1.0) -> None:
        self.model, self.meta = wm_core.cached_model(run)
        self.run = run
        self.report = wm_core.evaluate_checkpoint(
            run, episodes=episodes, seed=seed, temperature=temperature, model=self.model, meta=self.meta
        )
        self.card = self.report.card
        self._explorer: wm_core.LatentExplorer | None = None
        self.files_dir = Path(tempfile.mkdtemp(prefix="wm-inspect-"))

    @property
    def episode_lengths(self) -> list[int]:
        """Frames in each held-out episode with an open-loop rollout (the episode slider's range)."""
        return [int(v.sum()) for v in self.report.roll["valid"]]

    @property
    def longest(self) -> int:
        """Index of the episode with the longest open-loop rollout."""
        return int(np.argmax(self.episode_lengths))

    def text(self) -> str:
        """The card as `wm eval` prints it."""
        return wm_core.format_card(self.card)

    def figures(self, episode: int, horizon: int) -> dict[str, np.ndarray | None]:
        """Every figure, with the open-loop ones on `episode` up to `horizon` steps."""
        episode = int(np.clip(episode, 0, len(self.episode_lengths) - 1))
        return wm_core.card_figures(self.report, episode, max(1, int(horizon)))

    def files(self) -> list[str]:
        """report.json and report.png of this evaluation, written to a temp directory for download."""
        return [str(p) for p in wm_core.write_report(self.report, self.files_dir)]

    @property
    def explorer(self) -> wm_core.LatentExplorer:
        """Principal directions of the latent over the held-out episodes (computed on first use)."""
        if not self.model.capabilities.latent:
            raise ValueError(
                f"the latent explorer needs a latent; {self.meta['family']} is a pixel-space model whose state is its "
                "last frames"
            )
        if self._explorer is None:
            self._explorer = wm_core.LatentExplorer(self.model, self.report.episodes)
        return self._explorer

    def explore(self, episode: int, t: int, offsets: list[float]) -> dict[str, Any]:
        """The frozen state's real frame, its decoded frame moved by `offsets`, and where it sits."""
        ex = self.explorer
        episode = int(np.clip(episode, 0, len(ex.episodes) - 1))
        e = ex.episodes[episode]
        t = int(np.clip(t, 0, len(e) - 1))
        return {
            "real": e.obs[t],
            "decoded": ex.frame(episode, t, offsets),
            "coordinates": ex.coordinates(episode, t).round(2).tolist(),
            "explained": [round(100 * x, 1) for x in ex.explained],
            "episode": episode,
            "t": t,
            "decoded_by": "decoder" if self.model.capabilities.decoder else "probe",
        }


def saved_report(run: str | None) -> tuple[str, str | None, list[str]]:
    """(card text, report.png path, [report.json, report.png]) of the report `wm eval` saved beside `run`, or a
    line saying there is none yet (then Evaluate computes one)."""
    if not run:
        return "Pick a checkpoint.", None, []
    folder = Path(wm_core.read_meta(run)["_dir"])
    js, png = folder / "report.json", folder / "report.png"
    if not js.is_file():
        return "No saved report beside this checkpoint yet: press Evaluate (or run `wm eval RUN`).", None, []
    card = wm_core.ModelCard.load(js)
    files = [str(js)] + ([str(png)] if png.is_file() else [])
    return wm_core.format_card(card), str(png) if png.is_file() else None, files
