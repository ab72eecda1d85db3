"""The Learn tab in headless Chromium, on the shipped checkpoints: walk through all ten lessons with Next, work
each lesson's live control, answer each check question wrong and then right, reset one, and see no error toast.
With WM_LEARN_SHOTS=DIR it also saves a screenshot of every lesson there."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from test_app_browser import SHIPPED, browser, serve  # noqa: F401  (the browser fixture)

from playground.learn_tab import load_lessons

pytestmark = pytest.mark.browser
SLOW = 90_000  # ms: a control's first use loads a model and may collect a few held-out episodes


@pytest.fixture(scope="module")
def learn_page(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Page]:  # noqa: F811
    with serve(SHIPPED, tmp_path_factory.mktemp("runs")) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(url)
        page.get_by_role("tab", name="Learn").click()
        expect(page.locator("#wm-lesson-1")).to_be_visible()
        yield page
        context.close()


def hold(page: Page, key: str, ms: int) -> None:
    page.keyboard.down(key)
    page.wait_for_timeout(ms)
    page.keyboard.up(key)


def steps_of(page: Page, player: str) -> int:
    return int(page.evaluate(f"document.querySelector('#{player} .wm-step').textContent"))


def play(page: Page, player: str) -> None:
    """Click the player's first canvas and drive it until its step counter moves."""
    expect(page.locator(f"#{player} .wm-panels canvas").nth(1)).to_be_visible(timeout=SLOW)
    page.locator(f"#{player} .wm-panels canvas:visible").first.click()
    for _ in range(10):
        hold(page, "ArrowRight", 400)
        if steps_of(page, player) > 0:
            return
    raise AssertionError(f"{player} did not step while a key was held")


def image_shown(page: Page, elem_id: str) -> None:
    expect(page.locator(f"#{elem_id} img")).to_be_visible(timeout=SLOW)


def lesson_1(page: Page) -> None:
    page.click("#wm-learn-world-start")
    play(page, "wm-learn-world")
    expect(page.locator("#wm-learn-world .wm-real-panel")).to_be_visible()


def lesson_2(page: Page) -> None:
    page.click("#wm-learn-compress-go")
    image_shown(page, "wm-learn-compress-dec")
    image_shown(page, "wm-learn-compress-real")


def lesson_3(page: Page) -> None:
    page.click("#wm-learn-horizon-go")
    image_shown(page, "wm-learn-horizon-grid")
    expect(page.locator("#wm-learn-horizon-plot")).not_to_be_empty()


def lesson_4(page: Page) -> None:
    page.click("#wm-learn-sample")
    image_shown(page, "wm-learn-temp-strip")


def lesson_5(page: Page) -> None:
    page.click("#wm-learn-listen-go")
    table = page.locator("#wm-learn-listen-table")
    expect(table).to_contain_text("dreamer-cartpole-blind", timeout=SLOW)
    expect(table).to_contain_text("ΔtPSNR")


def lesson_6(page: Page) -> None:
    page.click("#wm-learn-blind-start")
    expect(page.locator("#wm-learn-blind-verdict")).to_contain_text("which pane is real", timeout=SLOW)
    labels = page.locator("#wm-learn-blind .wm-label")
    expect(labels.first).to_be_hidden()
    hidden_numbers = "e => getComputedStyle(e).visibility"
    assert page.locator("#wm-learn-blind .wm-rows").first.evaluate(hidden_numbers) == "hidden"
    play(page, "wm-learn-blind")
    swapped = page.evaluate("document.querySelector('#wm-learn-blind-wrap').classList.contains('wm-swap')")
    page.click("#wm-learn-blind-left")  # the real env's pane is on the left unless the round swapped them
    said = "Fooled: the real env was on the right." if swapped else "Right: that was the real env."
    expect(page.locator("#wm-learn-blind-verdict")).to_contain_text(said, timeout=SLOW)
    expect(page.locator("#wm-learn-blind-verdict")).to_contain_text(f"Score: {0 if swapped else 1} of 1 right")
    expect(labels.first).to_be_visible()
    # The reveal keeps the panes where they were: the real one is on the side the verdict names.
    real_x = page.locator("#wm-learn-blind .wm-real-panel").bounding_box()["x"]
    dream_x = page.locator("#wm-learn-blind .wm-dream-panel").bounding_box()["x"]
    assert (real_x > dream_x) == swapped


def lesson_7(page: Page) -> None:
    expect(page.locator("#wm-learn-ctrl-table")).to_contain_text("real", timeout=SLOW)
    page.locator("#wm-learn-ctrl-watch button, button#wm-learn-ctrl-watch").first.click()
    image_shown(page, "wm-learn-ctrl-real")


def lesson_8(page: Page) -> None:
    page.click("#wm-learn-plan-start")
    expect(page.locator("#wm-learn-plan-note")).to_contain_text("Planner", timeout=SLOW)
    for _ in range(2):
        page.click("#wm-learn-plan-move")
        page.wait_for_timeout(300)
    expect(page.locator("#wm-learn-plan-note")).to_contain_text("chosen", timeout=SLOW)
    image_shown(page, "wm-learn-plan-ghosts")


def lesson_9(page: Page) -> None:
    page.click("#wm-learn-fam-start")
    expect(page.locator("#wm-learn-fam .wm-dream-panel")).to_have_count(4, timeout=SLOW)
    play(page, "wm-learn-fam")


def lesson_10(page: Page) -> None:
    for card in ("a", "b"):
        expect(page.locator(f"#wm-learn-card-{card}-text textarea")).to_have_value(re.compile("playable-world bar"))


CONTROLS: dict[int, Callable[[Page], None]] = {
    1: lesson_1, 2: lesson_2, 3: lesson_3, 4: lesson_4, 5: lesson_5,
    6: lesson_6, 7: lesson_7, 8: lesson_8, 9: lesson_9, 10: lesson_10,
}  # fmt: skip


def answer(page: Page, n: int, choice: str, expect_text: str) -> None:
    page.locator(f"#wm-learn-q{n} label").filter(has_text=choice).first.click()
    page.click(f"#wm-learn-check{n}")
    expect(page.locator(f"#wm-learn-feedback{n}")).to_contain_text(expect_text, timeout=10_000)


def test_walk_through_every_lesson(learn_page: Page) -> None:
    page, lessons = learn_page, load_lessons()
    shots = os.environ.get("WM_LEARN_SHOTS")
    for i, lesson in enumerate(lessons):
        if i:
            page.click("#wm-learn-next")
        n = lesson.number
        expect(page.locator(f"#wm-lesson-{n}")).to_be_visible(timeout=10_000)
        expect(page.locator(f"#wm-lesson-{n}")).to_contain_text(lesson.title)
        CONTROLS[n](page)
        wrong = next(c for j, c in enumerate(lesson.choices, 1) if j != lesson.answer)
        answer(page, n, wrong, "Not quite")
        answer(page, n, lesson.choices[lesson.answer - 1], "Correct.")
        expect(page.locator("#wm-learn-progress")).to_contain_text(f"{n} of {len(lessons)} answered right")
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.locator(f"#wm-lesson-{n}").screenshot(path=str(Path(shots) / f"{n:02d}-{lesson.slug}.png"))
        assert not page.locator(".toast-body").all_inner_texts(), f"an error toast on lesson {n}"
    # Reset the last lesson: its answer and feedback go; the progress already earned stays.
    page.click(f"#wm-learn-reset{lessons[-1].number}")
    expect(page.locator(f"#wm-learn-feedback{lessons[-1].number}")).to_have_text("")
    expect(page.locator("#wm-learn-progress")).to_contain_text(f"{len(lessons)} of {len(lessons)} answered right")
    page.click("#wm-learn-prev")
    expect(page.locator(f"#wm-lesson-{lessons[-2].number}")).to_be_visible()
