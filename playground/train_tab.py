"""Train tab: pick a family, an env and a preset; collect, train, and watch loss and predictions live."""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import gradio as gr
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import wm_core  # noqa: E402

from .context import AppContext, Tab, TabSpec, user_of  # noqa: E402
from .hub import friendly, list_stores, whole_number  # noqa: E402
from .jobs import TrainJob  # noqa: E402

PLOTTED = ("loss", "recon_fg_mse", "recon_mse", "mdn_nll", "kl")


def loss_figure(job: TrainJob):
    """Training curves so far (one panel per metric the family logs)."""
    hist = job.history
    names = [k for k in hist[-1] if k not in ("step", "seconds", "steps_per_s", "grad_norm")] if hist else []
    names = sorted(names, key=lambda k: (k not in PLOTTED, PLOTTED.index(k) if k in PLOTTED else 0))[:4]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(10, 2.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        ax.plot([h["step"] for h in hist], [h[name] for h in hist], color="#ea580c")
        ax.set_title(name, fontsize=10)
        values = [h[name] for h in hist]
        wide = min(values) > 0 and max(values) > 10 * min(values)
        ax.set_yscale("log" if wide else "linear")
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    if not names:
        axes[0][0].text(0.5, 0.5, "curves appear once training starts", ha="center", va="center")
        axes[0][0].set_axis_off()
    fig.tight_layout()
    plt.close(fig)
    return fig


def progress_html(job: TrainJob) -> str:
    """A progress bar with the phase and numbers."""
    if job.phase == "queued" and job.queue is not None:
        place, wait = job.queue.place(job), job.queue.estimate_seconds(job)
        about = f", about {max(1, round(wait / 60))} min" if wait is not None else ""
        frac, text = 0.0, f"waiting for a free core: place {place or 1} in the training queue{about}"
    elif job.phase == "collecting":
        total, unit = job.collect_target
        frac, text = (
            job.collected / max(1, total),
            f"collecting data ({job.policy} play): {job.collected}/{total} {unit}",
        )
    else:
        frac = job.step / max(1, job.total_steps)
        last = job.history[-1] if job.history else {}
        rate = f" · {last.get('steps_per_s', 0):.1f} steps/s" if last else ""
        text = f"{job.phase}: step {job.step}/{job.total_steps}{rate}"
    return (
        f"<div style='border:1px solid var(--border-color-primary);border-radius:6px;height:22px;position:relative'>"
        f"<div style='background:#fb923c;height:100%;width:{100 * frac:.1f}%;border-radius:6px'></div>"
        f"<span style='position:absolute;left:8px;top:1px;font-size:13px'>{text}</span></div>"
    )


def data_choices(runs_dir: Path | None) -> list[tuple[str, str]]:
    """Collect with the scripted or random policy, or train on a store found under the runs directory."""
    collect = [("collect: scripted play mixed with random actions", "collect:scripted"),
               ("collect: random actions", "collect:random")]  # fmt: skip
    return collect + (list_stores(runs_dir) if runs_dir is not None else [])


def device_choices() -> list[str]:
    """auto / cpu / cuda, saying what this machine has."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return ["auto", "cpu"] + ([f"cuda ({gpu})"] if gpu else [])


def config_table(family: str) -> str:
    """The family's config fields as a markdown table: name, the small preset's value, what it does (the field's
    docstring). The form's knobs and `wm train --help` come from the same fields."""
    cls = wm_core.get_family(family)
    small = cls.preset("small")
    rows = [f"| `{f.name}` | {getattr(small, f.name)} | {wm_core.field_doc(cls.Config, f.name)} |"
            for f in dataclasses.fields(cls.Config)]  # fmt: skip
    return "| field | small preset | what it does |\n|---|---|---|\n" + "\n".join(rows)


def parse_overrides(family: str, text: str) -> dict[str, Any]:
    """`name=value, name=value` -> typed config overrides of `family`; ValueError (one line) for an unknown
    field or a value of the wrong type."""
    cls = wm_core.get_family(family)
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in (text or "").replace("\n", ",").split(","))):
        name, eq, value = part.partition("=")
        name, value = name.strip().replace("-", "_"), value.strip()
        if not eq or name not in fields:
            raise ValueError(f"'{part}' is not field=value with a field of {family} (see the table)")
        kind = type(fields[name].default)
        try:
            if kind is bool:
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                out[name] = value.lower() in ("true", "1", "yes")
            else:
                out[name] = kind(value)
        except ValueError:
            want = {int: "a whole number", float: "a number", bool: "true or false"}.get(kind, "text")
            raise ValueError(f"{name} takes {want}, got '{value}'") from None
    return out


def start_job(
    ctx: AppContext, user: str | None, jid: str, family: str, env_id: str, preset: str, device: str,
    n_steps: str | float | None, n_frames: str | float | None, source: str | None, advanced: str,
) -> tuple[TrainJob | None, str | None]:  # fmt: skip
    """Validate the form and queue a TrainJob for `user` under id `jid`; returns (job, None) or (None, one-line
    problem)."""
    try:
        overrides = parse_overrides(family, advanced)
        for key, value in (("steps", n_steps), ("frames", n_frames)):
            number = whole_number(value, f"{key.capitalize()} (blank for the preset's)", 1, 10**7)
            if number is not None:
                overrides[key] = number
    except ValueError as e:
        return None, str(e)
    source = source or "collect:scripted"
    collecting = source.startswith("collect:")
    job = TrainJob(family, (env_id or "").strip(), preset, overrides, (device or "auto").split(" ")[0],
                   ctx.runs_of(user), data=None if collecting else source,
                   policy=source.split(":", 1)[1] if collecting else "scripted", owner=user)  # fmt: skip
    try:
        job.start(ctx.jobs, jid)
    except Exception as e:
        return None, friendly(e)
    return job, None


def follow(jid: str, job: TrainJob):
    """Yield the job's progress, message, curves and preview until it ends."""
    shown_preview = None
    while True:
        alive = job.alive
        if job.preview is not None and job.preview is not shown_preview:
            shown_preview = job.preview
        msg = job.message if job.phase != "error" else f"**Training failed:** {job.error}"
        if job.phase == "done" or (job.phase == "stopped" and "nothing was saved" not in job.message):
            msg = f"**{job.phase}**: saved `{job.run}` at step {job.step}. Open the Play tab to drive it."
        yield jid, progress_html(job), msg, loss_figure(job), shown_preview
        if not alive:
            break
        time.sleep(0.5)


def _form(ctx: AppContext) -> dict[str, Any]:
    """The form's components."""
    cfg, f = wm_core.TrainConfig, {}
    with gr.Row():
        f["family"] = gr.Dropdown(sorted(wm_core.FAMILIES), value="ha", label="Family", elem_id="wm-family")
        f["env"] = gr.Dropdown(list(wm_core.CATALOG), value="CartPole-v1", allow_custom_value=True,
                               label="Environment (or type any gymnasium id)", elem_id="wm-env")  # fmt: skip
        f["preset"] = gr.Radio(list(wm_core.PRESET_NAMES), value="small", label="Preset", elem_id="wm-preset",
                               info="tiny: seconds, for checks · small: minutes on a CPU · large: a GPU")  # fmt: skip
        f["device"] = gr.Radio(device_choices(), value="auto", label="Device")
    with gr.Row():
        # Text boxes, not gr.Number: a blank Number reaches the handler as 0, so "blank = preset" could not be
        # told from a typed 0, and the browser silently drops letters typed into a number input.
        f["steps"] = gr.Textbox("", label="Gradient steps (blank = preset)", placeholder="blank = the preset's",
                                info=wm_core.field_doc(cfg, "steps"), elem_id="wm-steps", max_lines=1)  # fmt: skip
        f["frames"] = gr.Textbox("", label="Frames of data (blank = the env's default)", max_lines=1,
                                 placeholder="blank = the env's default", info=wm_core.field_doc(cfg, "frames"),
                                 elem_id="wm-frames")  # fmt: skip
        stores = data_choices(ctx.runs if ctx.room is None else None)  # a workshop page fills in its own on focus
        f["data"] = gr.Dropdown(stores, value="collect:scripted", label="Data", elem_id="wm-data",
                                scale=2, info="collect new episodes, or train on a store (your recorded play, or "
                                "another run's data)")  # fmt: skip
    with gr.Accordion("Advanced: every config field of the family", open=False):
        f["advanced"] = gr.Textbox("", label="More fields (field=value, comma-separated)", elem_id="wm-advanced",
                                   placeholder="e.g. lr=0.0003, batch_size=8")  # fmt: skip
        f["table"] = gr.Markdown(config_table("ha"), elem_id="wm-config-table")
    f["env_info"] = gr.Markdown(wm_core.CATALOG["CartPole-v1"].description)
    return f


def build_train_tab(ctx: AppContext) -> Tab:
    """Build the Train tab inside the current Blocks; its Start event fires when a run is done training."""
    gr.Markdown(
        "Train a world model: data is collected first (each env has a scripted player mixed with random "
        "actions, so the data reaches the states play reaches), or pick data you recorded by playing the real "
        "env in the Play tab. Then the model learns to predict frames, rewards and episode ends. A finished run "
        "appears in the other tabs."
    )
    f = _form(ctx)
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="wm-train-start")
        stop = gr.Button("Stop and save", variant="stop", elem_id="wm-train-stop")
    progress = gr.HTML("", elem_id="wm-train-progress")
    message = gr.Markdown("", elem_id="wm-train-message")
    curves = gr.Plot(label="Training curves", elem_id="wm-train-curves")
    preview = gr.Image(label="Open-loop preview on a training episode: real / predicted / |difference|",
                       interactive=False, elem_id="wm-train-preview", image_mode="RGB")  # fmt: skip
    job_id = gr.State("")

    def run(family, env, preset, device, steps, frames, data, advanced, request: gr.Request):  # noqa: ANN001
        jid = uuid.uuid4().hex  # the page keeps it in gr.State; the job trains on if the page goes away
        values = (family, env, preset, device, steps, frames, data, advanced)
        job, problem = start_job(ctx, user_of(request), jid, *values)
        if job is None:
            yield "", "", f"**Cannot start:** {problem}", None, None
            return
        yield from follow(jid, job)

    def stop_job(jid: str) -> str:
        job = ctx.jobs.jobs.get(jid) if jid else None
        if job is None or not (job.alive or job.phase == "queued"):
            return "Nothing is training."
        job.stop()
        return "Stopping: saving a resumable checkpoint…"

    def describe_env(env_id: str) -> str:
        entry = wm_core.CATALOG.get(env_id)
        return entry.description if entry else f"`{env_id}`: not in the catalog; frames come from its renderer."

    f["env"].change(describe_env, f["env"], f["env_info"])
    f["family"].change(config_table, f["family"], f["table"])

    def stores(request: gr.Request) -> dict:
        return gr.update(choices=data_choices(ctx.runs_of(user_of(request))))

    f["data"].focus(stores, None, f["data"])
    stop.click(stop_job, job_id, message, concurrency_limit=None)
    inputs = [f[k] for k in ("family", "env", "preset", "device", "steps", "frames", "data", "advanced")]
    trained = start.click(run, inputs, [job_id, progress, message, curves, preview], concurrency_limit=4)
    return Tab(trained=trained)


TRAIN = TabSpec("Train", "train", build_train_tab)
