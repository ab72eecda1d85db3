"""Bad values typed into every number field of the app, in headless Chromium: each is answered by a message
that names the field or the allowed range (our own line under the form, or Gradio's range check as a toast
now that the app launches with `show_error`), and nothing starts."""

from __future__ import annotations

import re

import pytest
import test_app_browser
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from test_app_browser import app_url, browser, text  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser
page = test_app_browser.page  # the fixture: a fresh page on the app


def type_into(page: Page, selector: str, value: str) -> None:
    """Replace the field's content with `value` (as typing would leave it), then leave the field."""
    box = page.locator(selector).first
    box.fill(value)
    box.press("Tab")


def toasts(page: Page) -> str:
    return " ".join(page.locator(".toast-body").all_inner_texts())


TRAIN = [  # (field, value, what the message must say)
    ("#wm-steps :is(input, textarea)", "3.5", "Steps (blank for the preset's) must be a whole number"),
    ("#wm-steps :is(input, textarea)", "-5", "Steps (blank for the preset's) must be from 1"),
    ("#wm-steps :is(input, textarea)", "0", "must be from 1"),
    ("#wm-frames :is(input, textarea)", "-1", "Frames (blank for the preset's) must be from 1"),
    ("#wm-steps :is(input, textarea)", "1e12", "must be from 1 to 10,000,000"),
    ("#wm-steps :is(input, textarea)", "abc", "Steps (blank for the preset's) must be a whole number, not 'abc'"),
    ("#wm-advanced textarea", "hidden=-4", "config hidden is -4"),
    ("#wm-advanced textarea", "lr=nan", "config lr is nan"),
    ("#wm-advanced textarea", "hidden=lots", "hidden takes a whole number, got 'lots'"),
]


def test_train_form_numbers(page: Page) -> None:
    page.get_by_role("tab", name="Train").click()
    page.locator("#wm-preset label:has-text('tiny')").click()
    page.get_by_text("Advanced: every config field of the family").click()
    for field, value, said in TRAIN:
        type_into(page, field, value)
        page.click("#wm-train-start")
        expect(page.locator("#wm-train-message")).to_contain_text(said, timeout=20_000)
        assert "Cannot start" in text(page, "#wm-train-message"), f"{field} = {value} started a job"
        type_into(page, field, "")  # back to blank for the next case
    assert not toasts(page)


def test_inspect_form_numbers(page: Page) -> None:
    page.get_by_role("tab", name="Inspect").click()
    for field, value, where, said in [
        ("#wm-inspect-seed input", "-3", "#wm-inspect-status", "Sampling seed must be from 0"),
        ("#wm-inspect-seed input", "2.5", "#wm-inspect-status", "Sampling seed must be a whole number"),
        ("#wm-inspect-episodes input", "100000", ".toast-body", "greater than maximum value 500"),  # Gradio's check
    ]:
        type_into(page, field, value)
        page.click("#wm-inspect-run")
        expect(page.locator(where).first).to_contain_text(said, timeout=20_000)
        assert "Evaluating" not in text(page, "#wm-inspect-status"), f"{field} = {value} started an evaluation"
        type_into(page, field, {"#wm-inspect-seed input": "0"}.get(field, "50"))


@pytest.mark.parametrize(
    "tab, field, value, said",
    [
        ("Play", "#wm-play-temp input[type=number]", "9", "Temperature (live): type a number from 0 to 2 (not 9"),
        ("Play", "#wm-sampling-steps input[type=number]", "0", "from 1 to 6 (not 0"),
        ("Compare", "#wm-cmp-temperature input[type=number]", "-1", "from 0 to 2 (not -1"),
    ],
)
def test_live_slider_boxes(page: Page, tab: str, field: str, value: str, said: str) -> None:
    """A live control's number box cleared or out of range: a toast naming the field and its range."""
    page.get_by_role("tab", name=tab).click()
    toast = page.locator(".toast-body", has_text=said).first
    for _ in range(3):  # on a busy machine a value typed while the page still hydrates sends no event: type again
        type_into(page, field, value)
        try:
            toast.wait_for(state="visible", timeout=8_000)
            break
        except PlaywrightTimeout:
            type_into(page, field, "1")
    expect(toast).to_be_visible(timeout=5_000)
    assert "Traceback" not in page.inner_text("body") and "TypeError" not in toasts(page)


def test_a_cleared_slider_box_is_named_not_a_type_error() -> None:
    """What the server does with the empty value a cleared number box sends (Gradio's own check raised a
    TypeError here)."""
    import gradio as gr

    from playground.widgets import Slider

    with gr.Blocks():
        slider = Slider(0.0, 2.0, value=1.0, label="Temperature")
    for bad, said in [(None, "(it is empty)"), ("", "(it is empty)"), (float("nan"), "(not nan)"), (3, "(not 3)")]:
        with pytest.raises(gr.Error, match=re.escape(f"Temperature: type a number from 0 to 2 {said}")):
            slider.preprocess(bad)
    assert slider.preprocess(1.5) == 1.5
