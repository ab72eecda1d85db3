"""The Inspect tab in headless Chromium on the repo's shipped checkpoints: evaluate one, check that every
figure renders and that the card equals `wm eval`'s for the same episodes, seed and temperature, then move
every slider once (episode, horizon, freeze step, each latent direction) and reset the explorer.

The browser, page and screenshot-on-failure fixtures are test_app_browser's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import test_app_browser
from playwright.sync_api import Page, expect

from playground.hub import ROOT, list_checkpoints
from playground.inspect_tab import EXPLORER_SLIDERS, FIGURES

pytestmark = pytest.mark.browser
browser, page = test_app_browser.browser, test_app_browser.page  # the Play browser test's fixtures

SHIPPED = ROOT / "checkpoints"
EPISODES, SEED, TEMPERATURE = 10, 1, 0.5
# An <img>'s pixels as a PNG data URL (equal strings mean identical pixels) plus its size and contrast.
IMAGE_PIXELS = """(img) => { if (!img) return null;
  if (!img.complete || !img.naturalWidth) { img.scrollIntoView({block: 'center'}); return null; }  // lazy images
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight; const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data; let lo = 255, hi = 0;
  for (let i = 0; i < d.length; i += 4) {
    lo = Math.min(lo, d[i], d[i+1], d[i+2]); hi = Math.max(hi, d[i], d[i+1], d[i+2]);
  }
  return {url: c.toDataURL(), width: c.width, contrast: hi - lo}; }"""


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app over the repo's checkpoints/ with an empty runs dir (test_app_browser's `page` opens it)."""
    with test_app_browser.serve(SHIPPED, tmp_path_factory.mktemp("inspect-runs")) as url:  # one torch thread,
        yield url  # as the `wm eval` run it is compared with


def pixels(page: Page, elem_id: str) -> dict:
    """The image shown inside #elem_id, once it has loaded."""
    page.locator(f"#{elem_id}").scroll_into_view_if_needed()  # images load lazily, when scrolled to
    img = page.locator(f"#{elem_id} img").first
    expect(img).to_be_visible(timeout=30_000)
    # Read the pixels in the same step that checks the image has loaded: a new picture may replace it between two
    # separate calls, and an image still loading has no pixels to read.
    read = f"() => ({IMAGE_PIXELS})(document.querySelector('#{elem_id} img'))"
    return page.wait_for_function(read, timeout=30_000).json_value()


def set_slider(page: Page, elem_id: str, value: float) -> None:
    """Type a value into a slider's number box and commit it."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def wait_changed(page: Page, elem_id: str, before: str) -> dict:
    """Wait until the image inside #elem_id differs from `before`; return it."""
    for _ in range(120):
        now = pixels(page, elem_id)
        if now["url"] != before:
            return now
        page.wait_for_timeout(250)
    raise AssertionError(f"#{elem_id} did not change")


def cli_card_text(run: str) -> str:
    """`wm eval` for the same episodes, seed and temperature, on one thread, as text."""
    cmd = [sys.executable, "-m", "wm_core.cli", "eval", run, "--episodes", str(EPISODES), "--seed", str(SEED),
           "--temperature", str(TEMPERATURE), "--no-report"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_inspect_every_control(page: Page) -> None:
    listed = list_checkpoints(SHIPPED, SHIPPED / "no-runs")
    page.get_by_role("tab", name="Inspect").click()
    expect(page.locator("#wm-inspect-checkpoint input")).to_have_value(listed[0].label)
    first = listed[-1]  # pick another one than the default from the list
    page.locator("#wm-inspect-checkpoint input").click()
    page.get_by_role("option", name=first.label).click()
    expect(page.locator("#wm-inspect-checkpoint input")).to_have_value(first.label)
    page.locator("#wm-inspect-episodes input").fill(str(EPISODES))
    page.locator("#wm-inspect-seed input").fill(str(SEED))
    set_slider(page, "wm-inspect-temp", TEMPERATURE)
    page.click("#wm-inspect-run")
    status = page.locator("#wm-inspect-status")
    expect(status).to_contain_text("Evaluated on 10 held-out episodes", timeout=240_000)
    expect(status).to_contain_text(f"sampling seed {SEED}, temperature {TEMPERATURE}")

    shown = page.locator("#wm-inspect-card textarea").input_value()
    assert "fg-MSE model" in shown and "linear state probe" in shown and "counterfactual actions" in shown
    assert shown.strip() == cli_card_text(first.path).strip(), "the Inspect tab and `wm eval` disagree"
    expect(page.locator("#wm-inspect-files")).to_contain_text("report.json")
    expect(page.locator("#wm-inspect-files")).to_contain_text("report.png")

    figures = {name: pixels(page, f"wm-fig-{name}") for name in FIGURES}
    for name, fig in figures.items():
        assert fig["width"] > 300 and fig["contrast"] > 100, f"figure {name} is empty: {fig['width']} px"

    set_slider(page, "wm-inspect-episode", 0)  # evaluation showed the longest episode; 0 is another one
    set_slider(page, "wm-inspect-horizon", 5)
    grid = wait_changed(page, "wm-fig-open_loop", figures["open_loop"]["url"])
    assert grid["width"] > 300

    frozen = pixels(page, "wm-explore-frame")
    real = pixels(page, "wm-explore-real")
    assert frozen["width"] == real["width"] == 256 and frozen["contrast"] > 50
    expect(page.locator("#wm-explore-info")).to_contain_text(re.compile(r"frame from the (decoder|probe)"))
    set_slider(page, "wm-explore-t", 2)
    frozen = wait_changed(page, "wm-explore-frame", frozen["url"])
    for i in range(EXPLORER_SLIDERS):
        before = pixels(page, "wm-explore-frame")["url"]
        set_slider(page, f"wm-explore-pc{i}", 3.0)
        if i == 0:  # the largest direction must visibly move the frame; later ones may change few pixels
            wait_changed(page, "wm-explore-frame", before)
    page.click("#wm-explore-zero")
    for _ in range(120):
        if pixels(page, "wm-explore-frame")["url"] == frozen["url"]:
            break
        page.wait_for_timeout(250)
    else:
        raise AssertionError("Back to the frozen state did not restore the frozen frame")
    assert page.locator("#wm-explore-pc0 input[type=number]").input_value() == "0"
