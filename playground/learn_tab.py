"""Learn tab: ten short lessons, each a text a teacher can edit (playground/lessons/NN-slug.md), one live control
on a real shipped model (playground/lesson_views.py and lesson_live.py), a "try this" prompt and one check question
with immediate feedback; a progress line across lessons and a reset button per lesson."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from .context import AppContext, Tab, TabSpec
from .lesson_live import LIVE_CONTROLS
from .lesson_views import VIEW_CONTROLS, Control

LESSONS_DIR = Path(__file__).parent / "lessons"
FIELDS = ("title", "checkpoint", "question", "answer", "right", "wrong")
CONTROLS: dict[int, Callable[[AppContext, str], Control]] = {**VIEW_CONTROLS, **LIVE_CONTROLS}

CSS = """
.wm-lesson-progress { font-size: 15px; }
.wm-lesson-progress b { color: #16a34a; }
/* Lesson 6's blind game: neither labels, numbers nor border colours say which pane is the real env. */
.wm-blindgame .wm-label { display: none; }
.wm-blindgame .wm-rows, .wm-blindgame .wm-spark, .wm-blindgame .wm-meta,
.wm-blindgame .wm-status { visibility: hidden; }
.wm-blindgame .wm-panel canvas { border-color: var(--border-color-primary) !important; }
.wm-swap .wm-panels { flex-direction: row-reverse; justify-content: flex-end; }  /* kept after the reveal */
"""


@dataclass
class Lesson:
    """One lesson file: its front matter and its markdown body."""

    number: int
    slug: str
    title: str
    checkpoint: str
    question: str
    choices: list[str]
    answer: int  # 1-based index into choices
    right: str
    wrong: str
    body: str


def parse_lesson(path: Path) -> Lesson:
    """Read `NN-slug.md`: a front matter of `key: value` lines (and `choices:` with `- ` items) between `---`
    lines, then the body. A malformed file is a ValueError naming the file and what to fix."""
    text = path.read_text(encoding="utf-8")
    parts = text.split("\n---", 1)
    if not text.startswith("---") or len(parts) != 2:
        raise ValueError(f"{path.name}: a lesson starts with a front matter between two '---' lines")
    head, body = parts[0][3:], parts[1].lstrip("-").strip()
    meta: dict[str, Any] = {"choices": []}
    for line in head.strip().splitlines():
        if line.startswith("- "):
            meta["choices"].append(line[2:].strip())
        elif ":" in line:
            key, value = line.split(":", 1)
            if key.strip() != "choices":
                meta[key.strip()] = value.strip()
    missing = [f for f in FIELDS if not meta.get(f)]
    if missing:
        raise ValueError(f"{path.name}: the front matter lacks {', '.join(missing)}")
    number, _, slug = path.stem.partition("-")
    answer = int(meta["answer"]) if str(meta["answer"]).isdigit() else 0
    if not number.isdigit() or not 1 <= answer <= len(meta["choices"]) or len(meta["choices"]) < 2:
        raise ValueError(f"{path.name}: name it NN-slug.md and give 2+ choices with answer: their 1-based index")
    fields = {f: meta[f] for f in FIELDS if f != "answer"}
    return Lesson(int(number), slug, choices=meta["choices"], answer=answer, body=body, **fields)


def load_lessons(folder: Path | None = None) -> list[Lesson]:
    """The lessons in `folder` (default `LESSONS_DIR`), in file-name order."""
    return [parse_lesson(p) for p in sorted((folder or LESSONS_DIR).glob("[0-9][0-9]-*.md"))]


def progress_markdown(lessons: list[Lesson], done: dict[int, bool]) -> str:
    """One line: ✓ for a lesson whose question was answered right, ○ otherwise."""
    marks = " ".join(f"**✓ {x.number}**" if done.get(x.number) else f"○ {x.number}" for x in lessons)
    return f"Progress: {marks} — {sum(bool(done.get(x.number)) for x in lessons)} of {len(lessons)} answered right"


def check_answer(lesson: Lesson, picked: str | None, done: dict[int, bool]) -> tuple[str, dict[int, bool]]:
    """Feedback for the picked choice, and the progress record updated."""
    if not picked:
        return "Pick an answer first.", done
    ok = lesson.choices.index(picked) + 1 == lesson.answer if picked in lesson.choices else False
    done = {**done, lesson.number: bool(done.get(lesson.number)) or ok}
    return (f"✅ **Correct.** {lesson.right}" if ok else f"❌ **Not quite.** {lesson.wrong}"), done


def _page(ctx: AppContext, lesson: Lesson, done: gr.State, progress: gr.Markdown, lessons: list[Lesson]) -> Control:
    """One lesson's page inside the current Blocks: text, live control, question, reset."""
    gr.Markdown(f"## {lesson.number}. {lesson.title}")
    gr.Markdown(lesson.body, elem_classes=["wm-lesson-text"])
    build = CONTROLS.get(lesson.number)
    if build is None:
        control = Control()
        gr.Markdown(f"*No live control is defined for lesson {lesson.number}.*")
    else:
        control = build(ctx, lesson.checkpoint)
    gr.Markdown("### Check yourself")
    pick = gr.Radio(lesson.choices, label=lesson.question, elem_id=f"wm-learn-q{lesson.number}")
    with gr.Row():
        check = gr.Button("Check", variant="primary", scale=0, min_width=120, elem_id=f"wm-learn-check{lesson.number}")
        reset = gr.Button("Reset this lesson", scale=0, min_width=180, elem_id=f"wm-learn-reset{lesson.number}")
    feedback = gr.Markdown("", elem_id=f"wm-learn-feedback{lesson.number}")

    def on_check(picked: str | None, record: dict[int, bool]):
        text, record = check_answer(lesson, picked, record or {})
        return text, record, progress_markdown(lessons, record)

    def on_reset(*_: Any):
        return [None, "", *control.reset_values()]

    check.click(on_check, [pick, done], [feedback, done, progress])
    reset.click(on_reset, None, [pick, feedback, *control.reset_outputs])
    return control


def build_learn_tab(ctx: AppContext) -> Tab:
    """Build the Learn tab inside the current Blocks."""
    try:
        lessons = load_lessons()
    except (OSError, ValueError) as e:  # the app still starts; the tab says what to fix
        gr.Markdown(f"**A lesson file cannot be read:** {e}", elem_id="wm-learn-error")
        return Tab()
    gr.Markdown(
        "A guided path through world models in ten short lessons. Each one ends on a live control of a real, "
        "trained model shipped with the playground (it runs offline, on a CPU). Pick a lesson, read, try, check."
    )
    titles = [f"{x.number}. {x.title}" for x in lessons]
    done = gr.State({})
    progress = gr.Markdown(
        progress_markdown(lessons, {}), elem_classes=["wm-lesson-progress"], elem_id="wm-learn-progress"
    )
    with gr.Row():
        picker = gr.Dropdown(
            titles, value=titles[0] if titles else None, label="Lesson", scale=4, elem_id="wm-learn-pick"
        )
        prev = gr.Button("← Previous", scale=0, min_width=130, elem_id="wm-learn-prev")
        nxt = gr.Button("Next →", scale=0, min_width=130, elem_id="wm-learn-next")
    pages, lists = [], []
    for i, lesson in enumerate(lessons):
        with gr.Column(visible=i == 0, elem_id=f"wm-lesson-{lesson.number}") as page:
            control = _page(ctx, lesson, done, progress, lessons)
        pages.append(page)
        lists += control.checkpoint_lists

    def show(title: str | None):
        k = titles.index(title) if title in titles else 0
        return [gr.update(visible=j == k) for j in range(len(pages))]

    def move(title: str | None, by: int):
        k = titles.index(title) if title in titles else 0
        return titles[max(0, min(len(titles) - 1, k + by))]

    picker.change(show, picker, pages)
    prev.click(lambda t: move(t, -1), picker, picker)
    nxt.click(lambda t: move(t, 1), picker, picker)
    return Tab(checkpoint_lists=lists)


LEARN = TabSpec("Learn", "learn", build_learn_tab, css=CSS)
