"""Room tab (workshop mode, the instructor's page only): the participants' logins, every training run in the queue
with a Cancel, and Publish, which copies a run into the class gallery every participant sees."""

from __future__ import annotations

from typing import Any

import gradio as gr

from .context import AppContext, Tab, TabSpec, user_of
from .hub import friendly

ONLY_INSTRUCTOR = "Only the instructor can do this."


def in_workshop(ctx: AppContext) -> bool:
    """The app serves a room (workshop mode)."""
    return ctx.room is not None


def instructor(ctx: AppContext, user: str | None) -> bool:
    """`user` is the room's instructor."""
    return ctx.room is not None and ctx.room.is_instructor(user)


def logins_markdown(ctx: AppContext) -> str:
    """The participants' logins as a table for the instructor to hand out."""
    rows = "\n".join(f"| `{name}` | `{password}` |" for name, password in ctx.room.logins())
    return "| login | password |\n|---|---|\n" + rows


def queue_markdown(ctx: AppContext) -> tuple[str, list[tuple[str, str]]]:
    """Every training job (running, waiting, finished) as a table, and the (label, id) choices to cancel."""
    rows, choices = [], []
    for jid, job in list(ctx.jobs.jobs.items()):
        place = ctx.jobs.place(job)
        state = f"waiting (place {place})" if place else job.phase
        rows.append(f"| {job.owner or '–'} | {job.family} · {job.env_id} | {state} | {job.step}/{job.total_steps} |")
        if job.phase not in ("done", "stopped", "error"):
            choices.append((f"{job.owner or '–'}: {job.family} · {job.env_id} ({state})", jid))
    head = f"{len(ctx.jobs.running)} training, {len(ctx.jobs.waiting)} waiting, {ctx.jobs.slots} at a time.\n\n"
    table = "| who | run | state | steps |\n|---|---|---|---|\n" + "\n".join(rows) if rows else "No training runs yet."
    return head + table, choices


def build_room_tab(ctx: AppContext) -> Tab:
    """Build the Room tab (shown to the instructor only, see `ROOM`; each handler checks again)."""
    gr.Markdown(
        "The room: participants sign in with their login and password below. Each trains into their own runs "
        "folder and sees the shipped checkpoints, the class gallery and their own runs."
    )
    with gr.Accordion("Participants' logins", open=False):
        logins = gr.Markdown("", elem_id="wm-room-logins")
    with gr.Row():
        refresh = gr.Button("Refresh", elem_id="wm-room-refresh", scale=0, min_width=100)
        pick_job = gr.Dropdown([], label="Training run to cancel", elem_id="wm-room-job", scale=3)
        cancel = gr.Button("Cancel it", variant="stop", elem_id="wm-room-cancel", scale=0, min_width=130)
    queue = gr.Markdown("", elem_id="wm-room-queue")
    with gr.Row():
        run = gr.Dropdown(choices=ctx.checkpoints(), label="Run to publish to everyone", scale=4, elem_id="wm-room-run")
        publish = gr.Button("Publish to the class gallery", elem_id="wm-room-publish", scale=0, min_width=200)
    said = gr.Markdown("", elem_id="wm-room-message")

    def show(request: gr.Request) -> tuple[Any, ...]:
        if not instructor(ctx, user_of(request)):
            return ONLY_INSTRUCTOR, gr.update(choices=[]), ""
        table, choices = queue_markdown(ctx)
        return logins_markdown(ctx), gr.update(choices=choices, value=None), table

    def on_cancel(jid: str | None, request: gr.Request) -> str:
        if not instructor(ctx, user_of(request)):
            return ONLY_INSTRUCTOR
        return ctx.jobs.cancel(jid) if jid else "Pick a training run first."

    def on_publish(path: str | None, request: gr.Request) -> str:
        if not instructor(ctx, user_of(request)):
            return ONLY_INSTRUCTOR
        if not path:
            return "Pick a run first."
        try:
            copy = ctx.room.publish(path)
        except (OSError, ValueError) as e:
            return f"**Could not publish:** {friendly(e)}"
        return f"Published as `{copy.name}`: everyone sees it in their checkpoint lists after a reload."

    refresh.click(show, None, [logins, pick_job, queue])
    cancel.click(on_cancel, pick_job, said).then(show, None, [logins, pick_job, queue])
    publish.click(on_publish, run, said)
    return Tab(checkpoint_lists=[run], on_load=show, on_load_outputs=[logins, pick_job, queue])


ROOM = TabSpec("Room", "room", build_room_tab, available=in_workshop, shown_to=instructor)
