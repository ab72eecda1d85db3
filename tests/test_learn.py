"""The Learn tab's lesson files: the shipped ten parse, stay short and each has a live control; a malformed
lesson is a one-line message naming the file and what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from playground.learn_tab import CONTROLS, check_answer, load_lessons, parse_lesson, progress_markdown

GOOD = """---
title: A lesson
checkpoint: dreamer-cartpole
question: Which?
choices:
- one
- two: with a colon
- three
answer: 2
right: Yes.
wrong: Look again.
---
Some **body** text.

**Try this:** press a key.
"""


def test_the_shipped_lessons() -> None:
    lessons = load_lessons()
    assert [x.number for x in lessons] == list(range(1, 11))
    for x in lessons:
        words = len(x.body.split())
        assert words <= 200, f"lesson {x.number} has {words} words"
        assert "**Try this:**" in x.body, f"lesson {x.number} has no 'try this' prompt"
        assert x.number in CONTROLS, f"lesson {x.number} has no live control"
        assert 3 <= len(x.choices) <= 4 and 1 <= x.answer <= len(x.choices)
    shipped = Path(__file__).resolve().parent.parent / "checkpoints"
    for x in lessons:
        for name in x.checkpoint.split("+"):
            assert (shipped / name / "checkpoint.json").is_file(), f"lesson {x.number} needs checkpoints/{name}"


def test_a_lesson_parses_and_checks_answers(tmp_path: Path) -> None:
    path = tmp_path / "03-a-lesson.md"
    path.write_text(GOOD)
    lesson = parse_lesson(path)
    assert (lesson.number, lesson.slug, lesson.answer) == (3, "a-lesson", 2)
    assert lesson.choices == ["one", "two: with a colon", "three"]
    assert lesson.body.startswith("Some **body** text.")
    text, done = check_answer(lesson, "one", {})
    assert text.startswith("❌") and "Look again." in text and done == {3: False}
    text, done = check_answer(lesson, "two: with a colon", done)
    assert text.startswith("✅") and done == {3: True}
    assert check_answer(lesson, "one", done)[1] == {3: True}, "a later wrong answer does not undo a right one"
    assert check_answer(lesson, None, done)[0] == "Pick an answer first."
    assert "1 of 1 answered right" in progress_markdown([lesson], done)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("no front matter", "front matter between two '---' lines"),
        (GOOD.replace("question: Which?\n", ""), "lacks question"),
        (GOOD.replace("answer: 2", "answer: 7"), "1-based index"),
        (GOOD.replace("answer: 2", "answer: two"), "1-based index"),
    ],
)
def test_a_malformed_lesson_names_the_file_and_the_fix(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "04-broken.md"
    path.write_text(text)
    with pytest.raises(ValueError, match="04-broken.md") as err:
        parse_lesson(path)
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_a_broken_lesson_leaves_the_app_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Learn tab shows the file's problem in one line; the other tabs still build."""
    import gradio as gr

    import playground.learn_tab as learn
    from playground.context import AppContext

    (tmp_path / "01-broken.md").write_text("no front matter")
    monkeypatch.setattr(learn, "LESSONS_DIR", tmp_path)  # a teacher's folder with one broken lesson
    with gr.Blocks() as demo:
        tab = learn.build_learn_tab(AppContext(tmp_path, tmp_path))
    assert tab.checkpoint_lists == []
    shown = [b.value for b in demo.blocks.values() if isinstance(b, gr.Markdown)]
    assert any("A lesson file cannot be read" in v and "01-broken.md" in v for v in shown), shown
