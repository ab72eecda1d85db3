"""The real app in headless Chromium: play a dream with held keys, train a run and play it, read errors.

The app is built with `build_demo` and launched in this process on a free port; playwright drives Debian's
/usr/bin/chromium (never a downloaded browser). A failing test leaves a screenshot in the temp directory.
"""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from test_hub import TINY_STEPS, train_tiny

import wm_core
from playground import build_demo, launch

pytestmark = pytest.mark.browser
SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
TRAIN_TIMEOUT_MS = 120_000
MESSAGE = "document.querySelector('#wm-train-message')"

# The 64x64 dream canvas as a PNG data URL: equal strings mean identical pixels.
DREAM_PIXELS = "document.querySelector('#wm-player canvas.wm-dream').toDataURL()"
# Min and max over RGB and the alpha channel of the real-env canvas: an unpainted canvas is all zero.
REAL_PAINT = """() => { const c = document.querySelector('#wm-player canvas.wm-real');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let lo = 255, hi = 0, alpha = 255;
  for (let i = 0; i < d.length; i += 4) {
    lo = Math.min(lo, d[i], d[i+1], d[i+2]); hi = Math.max(hi, d[i], d[i+1], d[i+2]); alpha = Math.min(alpha, d[i+3]);
  }
  return {lo, hi, alpha}; }"""


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(shipped: Path, runs: Path) -> Iterator[str]:
    """The app over `shipped` and `runs`, launched in this process on a free port; yields its URL."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WM_THREADS", "1")  # 2 shared cores: the server, chromium and pytest all need one
        demo = build_demo(checkpoint_dir=shipped, runs_dir=runs)
    port = free_port()
    launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app over a shipped dir holding one tiny trained CartPole run, with an empty runs dir."""
    root = tmp_path_factory.mktemp("app")
    train_tiny(root / "shipped" / "ha-cartpole")
    with serve(root / "shipped", root / "runs") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian chromium."""
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `bash scripts/install.sh --test`"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, app_url: str, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh 1280x800 page on the app (a new browser client); screenshots itself if the test fails."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.goto(app_url)
    pg.wait_for_selector("#wm-start")
    failed_before = request.session.testsfailed
    yield pg
    if request.session.testsfailed > failed_before:
        shot = Path(tempfile.gettempdir()) / f"wm-browser-{request.node.name}.png"
        pg.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failing page: {shot}")
    context.close()


def text(page: Page, selector: str) -> str:
    """Inner text of the first match."""
    return page.locator(selector).first.inner_text()


def start_playing(page: Page) -> None:
    """Press Start on the selected checkpoint and wait until the frame loop answers."""
    page.click("#wm-start")
    expect(page.locator("#wm-play-info")).to_contain_text("CartPole-v1", timeout=30_000)
    expect(page.locator("#wm-player .wm-status")).to_contain_text("Hold a key", timeout=10_000)  # CartPole waits
    page.click("#wm-player canvas.wm-dream")


def hold(page: Page, key: str, seconds: float, every: float = 0.1) -> list[str]:
    """Hold `key` for about `seconds`, sampling the dream canvas every `every` seconds."""
    samples = []
    page.keyboard.down(key)
    for _ in range(round(seconds / every)):
        page.wait_for_timeout(1000 * every)
        samples.append(page.evaluate(DREAM_PIXELS))
    page.keyboard.up(key)
    return samples


def shown_step(page: Page) -> int:
    """The step counter beside the dream."""
    return int(text(page, "#wm-player .wm-step"))


def train_tiny_in_tab(page: Page, env_id: str | None = None) -> None:
    """On the Train tab choose preset tiny (and `env_id`), leave steps and episodes as shown, and start."""
    page.get_by_role("tab", name="Train").click()
    page.locator("#wm-preset label:has-text('tiny')").click()
    if env_id is not None:
        env = page.get_by_label("Environment (or type any gymnasium id)")
        env.fill(env_id)
        env.press("Enter")
        expect(env).to_have_value(env_id)
    page.click("#wm-train-start")


def test_play_with_held_keys(page: Page) -> None:
    assert "(shipped)" in page.get_by_label("Checkpoint").input_value()
    # Make the page taller than the window so arrow keys *could* scroll it.
    page.add_style_tag(content="body { padding-bottom: 3000px !important; }")
    start_playing(page)
    assert shown_step(page) == 0 and page.evaluate("window.scrollY") == 0

    right = hold(page, "ArrowRight", 1.5)
    step_right, ret_right = shown_step(page), float(text(page, "#wm-player .wm-return"))
    left = hold(page, "ArrowLeft", 1.5)
    assert len(set(right)) >= 3 and len(set(left)) >= 3, "the dream frame did not change while a key was held"
    assert right[-1] != left[-1] and not set(right[-3:]) & set(left[-3:]), "left and right showed the same frames"
    assert step_right >= 5 and shown_step(page) > step_right
    assert ret_right > 0 and float(text(page, "#wm-player .wm-return")) > ret_right
    assert (
        text(page, "#wm-player .wm-latency").endswith("ms") and page.evaluate("window.__wmStats.latencies.length") >= 1
    )
    assert page.evaluate("window.scrollY") == 0, "arrow keys scrolled the page"

    # No key held on CartPole (no idle action): the dream waits.
    # Once a keyless tick has answered (status "Hold a key"), the request in flight at key-up has landed.
    expect(page.locator("#wm-player .wm-status")).to_contain_text("Hold a key", timeout=10_000)
    idle_step, idle_frame = shown_step(page), page.evaluate(DREAM_PIXELS)
    page.wait_for_timeout(1000)
    assert shown_step(page) == idle_step and page.evaluate(DREAM_PIXELS) == idle_frame

    # CartPole's arrows could only scroll sideways; the keys that scroll down must not either. A key the
    # player leaves alone (PageDown) does scroll, so these checks mean something.
    for key in ("ArrowDown", " ", "ArrowDown", " "):
        page.keyboard.press(key)
    page.wait_for_timeout(300)
    assert page.evaluate("[window.scrollX, window.scrollY]") == [0, 0], "arrow keys or space scrolled the page"
    page.keyboard.press("PageDown")
    page.wait_for_function("window.scrollY > 0", timeout=5_000)
    page.evaluate("window.scrollTo(0, 0)")

    # Lockstep: the real env appears beside the dream, painted, and moves with the same keys.
    expect(page.locator("#wm-player canvas.wm-real")).to_be_hidden()
    page.get_by_label("Real env beside the dream (same keys)").check()
    expect(page.locator("#wm-play-status")).to_contain_text("real env beside the dream")
    expect(page.locator("#wm-player canvas.wm-real")).to_be_visible(timeout=10_000)
    paint = page.evaluate(REAL_PAINT)
    assert paint["alpha"] == 255 and paint["hi"] - paint["lo"] > 50, f"real canvas not painted: {paint}"
    page.click("#wm-player canvas.wm-dream")
    hold(page, "ArrowRight", 0.6)
    expect(page.locator("#wm-player .wm-real-return")).not_to_have_text("")
    assert float(text(page, "#wm-player .wm-real-return").split()[0]) > 0


def test_train_then_play(page: Page) -> None:
    train_tiny_in_tab(page)
    message = page.locator("#wm-train-message")
    expect(message).to_contain_text("done", timeout=TRAIN_TIMEOUT_MS)
    tiny_steps = wm_core.get_family("ha").preset("tiny").steps
    assert f"at step {tiny_steps}" in message.inner_text()
    expect(page.locator("#wm-train-curves img, #wm-train-curves svg").first).to_be_visible()
    assert "Traceback" not in page.inner_text("body")

    page.get_by_role("tab", name="Play").click()
    page.get_by_role("button", name="↻ Refresh list").click()
    page.get_by_label("Checkpoint").click()
    page.get_by_role("option").filter(has_text="trained here").first.click()
    expect(page.get_by_label("Checkpoint")).to_have_value(re.compile(r"\(trained here\)$"))
    start_playing(page)
    assert tiny_steps != TINY_STEPS  # so the info line tells the new run from the shipped one
    assert f"step {tiny_steps}" in text(page, "#wm-play-info")
    frames = hold(page, "ArrowRight", 1.0)
    assert len(set(frames)) >= 3, "the trained run's dream did not change while a key was held"


def test_errors_are_readable(page: Page) -> None:
    train_tiny_in_tab(page, env_id="NoSuchEnv-v0")
    expect(page.locator("#wm-train-message")).to_contain_text("unknown environment", timeout=30_000)
    assert "NoSuchEnv-v0" in text(page, "#wm-train-message")
    assert "Traceback" not in page.inner_text("body") and "Error" not in text(page, "#wm-train-message")
    assert not page.locator(".toast-body").all_inner_texts(), "a Gradio error toast instead of the message"


def test_shipped_mcts_agent_drives_on_autopilot(browser: Browser, tmp_path: Path) -> None:
    shipped = tmp_path / "shipped"
    shutil.copytree(SHIPPED / "muzero-cartpole-agent", shipped / "muzero-cartpole-agent")
    with serve(shipped, tmp_path / "runs") as url:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.goto(url)
        page.wait_for_selector("#wm-start")
        start_playing(page)
        autopilot = page.get_by_label("Let the trained agent or planner drive (any key takes over)")
        autopilot.check()  # the checkbox keeps the focus: the arrow keys below must still reach the game
        # The agent run's own search (25 simulations, as trained and evaluated), named in the status line.
        status = page.locator("#wm-player .wm-status")
        expect(status).to_contain_text("The MCTS planner (25 simulations) is driving", timeout=10_000)
        start = shown_step(page)
        page.wait_for_timeout(1500)
        assert shown_step(page) >= start + 5, "the planner did not step the dream without a key held"
        assert text(page, "#wm-player .wm-driver").startswith("MCTS planner")
        assert "value" in text(page, "#wm-player .wm-extras") and "time per move" in text(page, "#wm-player .wm-extras")
        page.keyboard.down("ArrowLeft")  # a held key takes over ...
        expect(page.locator("#wm-player .wm-driver")).to_have_text("you", timeout=5_000)
        page.keyboard.up("ArrowLeft")  # ... and the planner drives again once it is released
        expect(page.locator("#wm-player .wm-driver")).to_contain_text("MCTS planner", timeout=5_000)
        page.keyboard.press(" ")  # space still toggles the focused checkbox: the autopilot is off again
        expect(autopilot).not_to_be_checked()
        expect(status).to_contain_text("Hold a key", timeout=10_000)
        context.close()
