"""The Compare tab in headless Chromium, on the shipped checkpoints: pick two CartPole runs, start, hold keys,
pause, reset, change the temperature and dream from here; every canvas, number and figure must show.

The browser, page and screenshot-on-failure fixtures are test_app_browser's; `app_url` here serves the repo's
checkpoints/ (two tiny CartPole runs trained here stand in while it holds fewer than two).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_app_browser
from playwright.sync_api import Page, expect
from test_hub import TINY_STEPS, train_tiny

import wm_core
from playground.hub import ROOT, CheckpointInfo, list_checkpoints

pytestmark = pytest.mark.browser
browser, page = test_app_browser.browser, test_app_browser.page  # the Play browser test's fixtures

RUNS_LABEL = "Runs to compare (up to 4, one env)"
# Min and max over RGB and the alpha channel of a canvas or a loaded image: an unpainted one is all zero.
PIXEL_SPREAD = """(el) => { let c = el;
  if (el.tagName === 'IMG') { c = document.createElement('canvas'); c.width = el.naturalWidth;
    c.height = el.naturalHeight; c.getContext('2d').drawImage(el, 0, 0); }
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let lo = 255, hi = 0, alpha = 255;
  for (let i = 0; i < d.length; i += 4) {
    lo = Math.min(lo, d[i], d[i+1], d[i+2]); hi = Math.max(hi, d[i], d[i+1], d[i+2]); alpha = Math.min(alpha, d[i+3]);
  }
  return {lo, hi, alpha, width: c.width}; }"""


def cartpole_runs(shipped: Path) -> list[CheckpointInfo]:
    """The CartPole checkpoints the app lists from `shipped`."""
    return [c for c in list_checkpoints(shipped, shipped / "no-runs") if c.env_id == "CartPole-v1"]


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repo's checkpoints/ when it holds two CartPole runs, else two tiny ones (ha, dreamer) trained here."""
    if len(cartpole_runs(ROOT / "checkpoints")) >= 2:
        return ROOT / "checkpoints"
    root = tmp_path_factory.mktemp("compare-shipped")
    ha = train_tiny(root / "ha-cartpole")
    wm_core.train_run(
        "dreamer", "CartPole-v1", preset="tiny", overrides={"steps": TINY_STEPS}, data=ha / "data",
        out=root / "dreamer-cartpole", device="cpu", command="wm train (test fixture)", checkpoint_every=0,
    )  # fmt: skip
    return root


@pytest.fixture(scope="module")
def app_url(shipped: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app over the shipped checkpoints with an empty runs dir (test_app_browser's `page` opens it)."""
    with test_app_browser.serve(shipped, tmp_path_factory.mktemp("compare-runs")) as url:
        yield url


def shown(page: Page, selector: str) -> list[str]:
    """Inner texts of every match."""
    return page.locator(selector).all_inner_texts()


def assert_painted(page: Page, selector: str, count: int) -> None:
    """`count` matches, each fully opaque with real contrast (not a blank or flat image)."""
    items = page.locator(selector)
    expect(items).to_have_count(count)
    for i in range(count):
        paint = items.nth(i).evaluate(PIXEL_SPREAD)
        assert paint["alpha"] == 255 and paint["hi"] - paint["lo"] > 50, f"{selector} #{i} not painted: {paint}"


def step_number(page: Page) -> int:
    """The step counter above the panels."""
    return int(page.locator("#wm-compare .wm-step").inner_text())


def test_compare_every_control(page: Page, shipped: Path) -> None:
    labels = [c.label for c in cartpole_runs(shipped)[:2]]
    page.get_by_role("tab", name="Compare").click()
    info, status, step = (
        page.locator("#wm-cmp-info"),
        page.locator("#wm-cmp-status-line"),
        page.locator("#wm-compare .wm-step"),
    )

    # Pick two runs by hand: clear the default picks, then choose each from the list.
    page.locator("#wm-cmp-runs .remove-all").click()
    expect(info).to_contain_text("Pick 1 to 4 checkpoints")
    for label in labels:
        page.get_by_label(RUNS_LABEL).click()
        page.get_by_role("option", name=label).click()
    expect(info).to_contain_text("2 checkpoints of CartPole-v1")

    page.click("#wm-cmp-start")
    expect(info).to_contain_text("2 models on CartPole-v1", timeout=30_000)
    expect(page.locator("#wm-compare .wm-status")).to_contain_text("Hold a key", timeout=10_000)  # CartPole waits
    panel_families = [lab.split(" · ")[0] for lab in shown(page, "#wm-compare .wm-dream-panel .wm-label")]
    assert panel_families == [lab.split(" · ")[0] for lab in labels]

    page.click("#wm-compare canvas.wm-real")
    for key in ("ArrowRight", "ArrowLeft", "ArrowRight"):  # alternate, so the real pole stays up a while
        page.keyboard.down(key)
        page.wait_for_timeout(250)
        page.keyboard.up(key)
    expect(step).not_to_have_text("0")
    assert_painted(page, "#wm-compare .wm-panel canvas", 3)  # the real env and two dreams
    divergences = [float(t) for t in shown(page, "#wm-compare .wm-div")]
    assert len(divergences) == 2 and all(math.isfinite(d) and d >= 0 for d in divergences)
    assert len([float(t) for t in shown(page, "#wm-compare .wm-reward")]) == 2
    assert all(t.endswith("%") or t.endswith("ended") for t in shown(page, "#wm-compare .wm-done"))
    assert float(page.locator("#wm-compare .wm-real-return").inner_text()) > 0
    assert page.locator("#wm-compare .wm-latency").inner_text().endswith("ms")
    assert page.evaluate("window.__wmStats.frames") >= 3 and page.evaluate("window.scrollY") == 0

    # Reset first, so that the real episode runs while Pause is checked.
    page.click("#wm-cmp-reset")
    expect(status).to_contain_text("new real context for every model")
    expect(step).to_have_text("0")
    page.click("#wm-cmp-pause")
    expect(status).to_contain_text("paused")
    expect(page.locator("#wm-compare .wm-status")).to_contain_text("Paused")
    page.click("#wm-compare canvas.wm-real")
    page.keyboard.down("ArrowLeft")
    page.wait_for_timeout(400)
    page.keyboard.up("ArrowLeft")
    assert step.inner_text() == "0", "the comparison stepped while paused"
    page.click("#wm-cmp-pause")
    expect(status).to_contain_text("playing")
    page.click("#wm-compare canvas.wm-real")
    page.keyboard.down("ArrowLeft")
    expect(step).not_to_have_text("0")
    page.keyboard.up("ArrowLeft")

    temperature = page.locator("#wm-cmp-temperature input[type=number]")
    temperature.fill("0.5")
    temperature.press("Enter")
    expect(status).to_contain_text("temperature 0.50")

    page.click("#wm-cmp-reset")  # a running real episode to dream from
    expect(status).to_contain_text("new real context")
    samples = page.locator("#wm-cmp-samples input[type=number]")
    samples.fill("3")
    samples.press("Enter")
    page.click("#wm-cmp-dream")
    expect(status).to_contain_text("3 dreams per model", timeout=60_000)
    page.wait_for_function("[...document.querySelectorAll('#wm-cmp-filmstrip img, #wm-cmp-plot img')]"
                           ".filter((i) => i.complete && i.naturalWidth > 0).length === 2")  # fmt: skip
    assert_painted(page, "#wm-cmp-filmstrip img", 1)
    assert_painted(page, "#wm-cmp-plot img", 1)
    # The default horizon of 20 shows every 2nd step: 10 columns of 64 px with 2 px gaps, shown at 2x.
    assert page.locator("#wm-cmp-filmstrip img").evaluate("(i) => i.naturalWidth") == 2 * (10 * 64 + 9 * 2)
    expect(page.locator("#wm-compare .wm-status")).to_contain_text("Paused")  # dreaming from here froze the comparison
    assert "Traceback" not in page.inner_text("body")
