"""A workshop room in headless Chromium: two participants and the instructor sign in from their own browser
contexts; each participant lists only their own runs (and the shipped ones), both play at the same time, the
Room tab is the instructor's alone, and a run the instructor publishes reaches the other participant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import test_app_browser
import test_workshop
from playwright.sync_api import Browser, BrowserContext, Page, expect
from test_app_browser import hold
from test_workshop import TOKEN, serve_room

from playground.workshop import INSTRUCTOR, participant_token

pytestmark = pytest.mark.browser
browser = test_app_browser.browser  # the fixtures: headless Debian chromium, and a room's folders
room_dirs = test_workshop.room_dirs


@pytest.fixture(scope="module")
def room_url(room_dirs: tuple[Path, Path, Path]) -> Iterator[str]:
    with serve_room(room_dirs[0], room_dirs[1]) as url:
        yield url


def sign_in(browser: Browser, url: str, login: str) -> tuple[BrowserContext, Page]:
    """A fresh browser context signed in as `login` through the login form; waits for the app."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(url)
    password = TOKEN if login == INSTRUCTOR else participant_token(TOKEN, login)
    page.get_by_label("username").fill(login)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#wm-start", timeout=60_000)
    return context, page


def listed(page: Page) -> list[str]:
    """The Play tab's checkpoint choices as the page shows them."""
    page.get_by_label("Checkpoint").click()
    expect(page.get_by_role("option").first).to_be_visible()
    names = page.get_by_role("option").all_inner_texts()
    page.locator("#wm-title").click()  # closes the list
    return names


def pick(page: Page, field: str, text: str) -> None:
    """Choose the option of the dropdown labelled `field` that contains `text`."""
    page.get_by_label(field).click()
    page.get_by_role("option").filter(has_text=text).first.click()


def test_a_room_of_three(browser: Browser, room_url: str) -> None:
    people = {who: sign_in(browser, room_url, who) for who in ("p01", "p02", INSTRUCTOR)}
    pages = {who: page for who, (_, page) in people.items()}
    try:
        for who, other in (("p01", "p02"), ("p02", "p01")):
            expect(pages[who].get_by_role("tab", name="Room")).to_have_count(0)
            shown = " ".join(listed(pages[who]))
            assert f"{who}-run" in shown and f"{other}-run" not in shown, f"{who} lists {shown}"
        everything = " ".join(listed(pages[INSTRUCTOR]))
        assert "p01-run" in everything and "p02-run" in everything

        for who in ("p01", "p02"):  # both play their own run at once
            page = pages[who]
            pick(page, "Checkpoint", f"{who}-run")
            page.click("#wm-start")
            expect(page.locator("#wm-play-info")).to_contain_text("CartPole-v1", timeout=30_000)
            page.click("#wm-player canvas.wm-dream")
        for who in ("p01", "p02"):
            frames = hold(pages[who], "ArrowRight", 1.0)
            assert len(set(frames)) >= 3, f"{who}'s dream did not move while a key was held"

        room = pages[INSTRUCTOR]
        room.get_by_role("tab", name="Room").click()
        room.get_by_text("Participants' logins").click()
        expect(room.locator("#wm-room-logins")).to_contain_text(participant_token(TOKEN, "p02"))
        pick(room, "Run to publish to everyone", "p02-run")
        room.click("#wm-room-publish")
        expect(room.locator("#wm-room-message")).to_contain_text("Published as p02-p02-run", timeout=30_000)

        pages["p01"].reload()
        pages["p01"].wait_for_selector("#wm-start", timeout=60_000)
        expect(pages["p01"].locator("#wm-checkpoint")).to_be_visible()
        shown = " ".join(listed(pages["p01"]))
        assert "p02-p02-run" in shown and "p01-run" in shown, shown
    finally:
        for context, _ in people.values():
            context.close()
