"""The tab contract: every tab is a `TabSpec` whose builder `build(ctx: AppContext) -> Tab` lays out its components
inside the current Blocks and talks to `wm_core` only through its public API. The spec also carries the CSS the
tab's components need and which apps and logins have the tab. `playground.app` composes the tabs from a list of
specs and, when a run finishes training, refreshes every checkpoint list the tabs registered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

import wm_core

from .hub import list_checkpoints, scan_checkpoints
from .workshop import Room


@dataclass
class AppContext:
    """Where the app finds and keeps things: the shipped checkpoints, the runs trained here, recordings and
    recorded play. In workshop mode (`room`) each participant has their own runs directory and sees the shipped
    checkpoints, the class gallery and their own runs; `user` is the login a handler reads from its request
    (None outside workshop mode)."""

    shipped: Path
    runs: Path
    batcher: Any = None
    """A shared `wm_core.StepBatcher` (players' dream steps run batched per model), or None: each steps alone."""
    room: Room | None = None
    jobs: Any = None
    """The app's `JobQueue`: how many training runs may train at once."""
    device: str = "cpu"
    """Where players' dreams run (Play, Compare, Learn's live views): cpu or cuda."""

    @property
    def records(self) -> Path:
        """Where Record saves GIFs and JSON logs."""
        return self.runs / "recordings"

    @property
    def play_data(self) -> Path:
        """Where recorded real-env play goes (one episode store per env)."""
        return self.runs / "play-data"

    def runs_of(self, user: str | None = None) -> Path:
        """Where `user`'s training runs go."""
        return self.runs if self.room is None else self.room.runs_of(user)

    def _dirs(self, user: str | None) -> list[Path]:
        return [self.runs] if self.room is None else self.room.run_dirs(user)

    def checkpoints(self, user: str | None = None) -> list[tuple[str, str]]:
        """(label, path) of every checkpoint `user` may open, shipped first: the choices of a checkpoint list."""
        return [(c.label, c.path) for c in list_checkpoints(self.shipped, self._dirs(user))]

    def unreadable(self, user: str | None = None) -> str:
        """A markdown line naming the checkpoints left out of the lists and why ("" when none)."""
        skipped = scan_checkpoints(self.shipped, self._dirs(user))[1]
        return ("**Not listed (cannot be read):** " + "; ".join(skipped)) if skipped else ""

    def first_checkpoint(self) -> str | None:
        """The path listed first, or None."""
        found = self.checkpoints()
        return found[0][1] if found else None

    def refreshed(self, request: gr.Request | None = None) -> dict[str, Any]:
        """A Gradio update that gives a checkpoint list the current choices of the request's login. It takes the
        request, not a login, so it serves as a handler as is (Gradio passes the request) and no list is ever
        refreshed as nobody: a participant's own runs stay listed."""
        return gr.update(choices=self.checkpoints(user_of(request)))


def user_of(request: gr.Request | None) -> str | None:
    """The login behind a request (None when the app has no logins)."""
    return getattr(request, "username", None) if request is not None else None


@dataclass
class Tab:
    """What a tab builder returns: its checkpoint lists (refreshed when a run finishes training) and, for the
    tab that trains, the event that fires then."""

    checkpoint_lists: list[gr.components.Component] = field(default_factory=list)
    trained: Any = None
    on_load: Any = None  # a handler (request) -> updates run when a page loads, for `on_load_outputs`
    on_load_outputs: list[gr.components.Component] = field(default_factory=list)


def everywhere(ctx: AppContext) -> bool:
    """A tab every app has."""
    return True


@dataclass(frozen=True)
class TabSpec:
    """One tab as `playground.app.TABS` lists it: title, id, builder, its CSS, and who has it. Adding a tab is
    adding a spec to that list; `build_demo` treats every spec alike."""

    title: str
    id: str
    build: Callable[[AppContext], Tab]
    css: str = ""
    """Style rules of the tab's components: Gradio 6 takes CSS at launch, so `playground.CSS` joins every spec's."""
    available: Callable[[AppContext], bool] = everywhere
    """Whether this app has the tab at all (the Room tab: only when it serves a room)."""
    shown_to: Callable[[AppContext, str | None], bool] | None = None
    """Which logins see it, asked on every page load (the tab starts hidden); None: everyone. The tab's handlers
    check again: hiding a tab is not access control."""


def keymap_markdown(meta: dict[str, Any]) -> str:
    """The keys of a checkpoint's env (`meta` from `wm_core.read_meta`) as a line of markdown, saying whether the
    dream waits while no key is held: the rule the session steps by (`KeyController.waits`), so a Box env, whose
    action decays and keeps the dream moving, never says it waits."""
    km = wm_core.env_entry(meta["env_id"]).keymap
    keys = " · ".join(f"**{line.split(' ', 1)[0]}** {line.split(' ', 1)[1]}" for line in km.describe())
    waits = wm_core.KeyController(km, wm_core.ActionSpec.from_json(meta["action_spec"])).waits(())
    return f"Keys: {keys}" + (" — the dream waits while no key is held" if waits else "")
