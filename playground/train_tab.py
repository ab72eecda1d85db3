"""Train tab: pick a family, an env and a preset; collect, train, and watch loss and predictions live."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import gradio as gr
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import wm_core  # noqa: E402

from .hub import TrainJob, friendly, list_stores  # noqa: E402

JOBS: dict[str, TrainJob] = {}  # job id -> job; each browser session holds its own ids in gr.State
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
    if job.phase == "collecting":
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


def data_choices(runs_dir: Path) -> list[tuple[str, str]]:
    """Collect with the scripted or random policy, or train on a store found under the runs directory."""
    collect = [("collect: scripted play mixed with random actions", "collect:scripted"),
               ("collect: random actions", "collect:random")]  # fmt: skip
    return collect + list_stores(runs_dir)


def device_choices() -> list[str]:
    """auto / cpu / cuda, saying what this machine has."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return ["auto", "cpu"] + ([f"cuda ({gpu})"] if gpu else [])


def build_train_tab(runs_dir: Path):
    """Build the Train tab inside the current Blocks; returns the Start event (for chaining)."""
    families = sorted(wm_core.FAMILIES)
    cfg = wm_core.TrainConfig
    gr.Markdown(
        "Train a world model: data is collected first (each env has a scripted player mixed with random "
        "actions, so the data reaches the states play reaches), or pick data you recorded by playing the real "
        "env in the Play tab. Then the model learns to predict frames, rewards and episode ends. A finished run "
        "appears in the Play tab."
    )
    with gr.Row():
        family = gr.Dropdown(families, value="ha", label="Family", elem_id="wm-family")
        env = gr.Dropdown(
            list(wm_core.CATALOG),
            value="CartPole-v1",
            allow_custom_value=True,
            label="Environment (or type any gymnasium id)",
            elem_id="wm-env",
        )
        preset = gr.Radio(
            list(wm_core.PRESET_NAMES),
            value="small",
            label="Preset",
            elem_id="wm-preset",
            info="tiny: seconds, for checks · small: minutes on a CPU · large: for a GPU",
        )
        device = gr.Radio(device_choices(), value="auto", label="Device")
    with gr.Row():
        steps = gr.Number(
            None,
            label="Gradient steps (blank = preset)",
            precision=0,
            info=wm_core.field_doc(cfg, "steps"),
            elem_id="wm-steps",
        )
        frames = gr.Number(
            None,
            label="Frames of data (blank = the env's default)",
            precision=0,
            info=wm_core.field_doc(cfg, "frames"),
            elem_id="wm-frames",
        )
        data = gr.Dropdown(
            data_choices(runs_dir),
            value="collect:scripted",
            label="Data",
            info="collect new episodes, or train on a store (your recorded play, or another run's data)",
            elem_id="wm-data",
            scale=2,
        )
    env_info = gr.Markdown(wm_core.CATALOG["CartPole-v1"].description)
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="wm-train-start")
        stop = gr.Button("Stop and save", variant="stop", elem_id="wm-train-stop")
    progress = gr.HTML("", elem_id="wm-train-progress")
    message = gr.Markdown("", elem_id="wm-train-message")
    curves = gr.Plot(label="Training curves", elem_id="wm-train-curves")
    preview = gr.Image(
        label="Open-loop preview on a training episode: real / predicted / |difference|",
        interactive=False,
        elem_id="wm-train-preview",
        image_mode="RGB",
    )
    job_id = gr.State("")

    def describe_env(env_id: str) -> str:
        entry = wm_core.CATALOG.get(env_id)
        return entry.description if entry else f"`{env_id}`: not in the catalog; frames come from its renderer."

    def run(family_name, env_id, preset_name, device_name, n_steps, n_frames, source):
        overrides = {k: int(v) for k, v in (("steps", n_steps), ("frames", n_frames)) if v}
        for k, v in overrides.items():
            if v < 1:
                yield "", "", f"**{k} must be at least 1.**", None, None
                return
        source = source or "collect:scripted"
        job = TrainJob(
            family_name,
            (env_id or "").strip(),
            preset_name,
            overrides,
            (device_name or "auto").split(" ")[0],
            runs_dir,
            data=None if source.startswith("collect:") else source,
            policy=source.split(":", 1)[1] if source.startswith("collect:") else "scripted",
        )
        try:
            job.start()
        except Exception as e:
            yield "", "", f"**Cannot start:** {friendly(e)}", None, None
            return
        jid = uuid.uuid4().hex
        JOBS[jid] = job
        try:
            yield from follow(jid, job)
        finally:  # the page may go away; the job keeps training and saves its run
            JOBS.pop(jid, None)

    def follow(jid: str, job: TrainJob):
        shown_preview = None
        while True:
            alive = job.alive
            if job.preview is not None and job.preview is not shown_preview:
                shown_preview = job.preview
            msg = job.message if job.phase not in ("error",) else f"**Training failed:** {job.error}"
            if job.phase in ("done", "stopped"):
                msg = f"**{job.phase}**: saved `{job.run}` at step {job.step}. Open the Play tab to drive it."
            yield jid, progress_html(job), msg, loss_figure(job), shown_preview
            if not alive:
                break
            time.sleep(0.5)

    def stop_job(jid: str) -> str:
        job = JOBS.get(jid)
        if job is None or not job.alive:
            return "Nothing is training."
        job.stop()
        return "Stopping: saving a resumable checkpoint…"

    env.change(describe_env, env, env_info)
    data.focus(lambda: gr.update(choices=data_choices(runs_dir)), None, data)
    stop.click(stop_job, job_id, message, concurrency_limit=None)
    return start.click(
        run,
        [family, env, preset, device, steps, frames, data],
        [job_id, progress, message, curves, preview],
        concurrency_limit=4,
    )
