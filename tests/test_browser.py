"""The app in a real headless Chromium (Playwright with Debian's chromium): chat, compare, a tiny training run
that appears in Chat, a screenshot of every tab, and no request leaving localhost.

Screenshots go to $EMPATHYGAIL_SCREENSHOTS when set (e.g. `screenshots/`), else to the test's tmp dir.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from demo.app_process import free_port
from demo.tiny_world import build_world

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("EMPATHYGAIL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
TIMEOUT_MS = 60_000


try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the tests skip and say why
    expect = sync_playwright = None


def _check_browser() -> None:
    if sync_playwright is None:
        pytest.skip("playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set EMPATHYGAIL_CHROMIUM)")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    _check_browser()
    from demo.app import build_app, launch
    from demo.settings import Settings
    from demo.tiny_world import write_data_dir

    root = tmp_path_factory.mktemp("browser")
    world = build_world(root)
    env = pytest.MonkeyPatch()
    env.setenv("EMPATHYGAIL_CACHE", str(root / "cache"))  # the toy data's trajectories are cached here
    settings = Settings(checkpoints_dir=world["checkpoints"], results_dir=world["results"], work_dir=root / "work",
                        data_dir=write_data_dir(root / "data"), host="127.0.0.1", port=free_port())
    app = build_app(settings)
    _, url, _ = launch(app, settings, prevent_thread_lock=True, quiet=True)
    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        tab.set_default_timeout(TIMEOUT_MS)
        local = ("http://127.0.0.1", "http://localhost", "ws://127.0.0.1", "data:", "blob:", "about:")
        tab.on("request", lambda r: None if r.url.startswith(local) else outside.append(r.url))
        tab.goto(url)
        tab.get_by_role("tab", name="Chat").wait_for()
        tab.outside = outside
        yield tab
        browser.close()
    app.close()
    env.undo()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = Path(os.environ.get("EMPATHYGAIL_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def bot_messages(page):
    return page.locator("#chat-box [data-testid='bot']")


def wait_for_the_reply(page) -> None:
    """Until the chat's event has ended. The pending bubble goes as soon as the first words are on the page; while
    a reply is still being written, the event's other outputs (the status line) show Gradio's `generating`."""
    page.wait_for_function("() => !document.querySelector("
                           "'#chat-box .pending, #chat-status .pending, #chat-status .generating')")


def test_chat_gets_a_reply(page, shots):
    open_tab(page, "Chat")
    box = page.locator("#chat-input textarea")
    box.fill("I lost my job today.")
    box.press("Enter")
    bot_messages(page).first.wait_for()
    page.locator("#chat-box [data-testid='user']").get_by_text("I lost my job today.").wait_for()
    page.locator("#chat-status").get_by_text("Emotion in your messages").wait_for()
    wait_for_the_reply(page)
    assert bot_messages(page).first.inner_text().strip()
    page.screenshot(path=str(shots / "chat.png"), full_page=True)


WATCH_BOT_TEXT = """() => {
    window.botTexts = [];
    new MutationObserver(() => {
        const bubbles = document.querySelectorAll("#chat-box [data-testid='bot']");
        const text = bubbles.length ? bubbles[bubbles.length - 1].innerText.trim() : "";
        if (text && text !== window.botTexts[window.botTexts.length - 1]) window.botTexts.push(text);
    }).observe(document.querySelector("#chat-box"), {subtree: true, childList: true, characterData: true});
}"""
# Types into the message box, as a person would, the moment the first words of a reply are on the page.
TYPE_DURING_STREAM = """(typed) => {
    const box = document.querySelector("#chat-input textarea");
    new MutationObserver((_, observer) => {
        if (!document.querySelector("#chat-box [data-testid='bot']")) return;
        observer.disconnect();
        box.value = typed;
        box.dispatchEvent(new Event("input", {bubbles: true}));
    }).observe(document.querySelector("#chat-box"), {subtree: true, childList: true, characterData: true});
}"""


def test_a_reply_grows_while_it_is_written_and_what_is_typed_meanwhile_stays(page):
    open_tab(page, "Chat")
    page.locator("#chat-clear").click()
    expect(bot_messages(page)).to_have_count(0)
    page.evaluate(WATCH_BOT_TEXT)
    page.evaluate(TYPE_DURING_STREAM, "It really hurts")
    box = page.locator("#chat-input textarea")
    box.fill("My best friend moved to another country and I miss her every single day.")
    box.press("Enter")
    bot_messages(page).first.wait_for()
    wait_for_the_reply(page)
    texts = page.evaluate("() => window.botTexts")
    final = bot_messages(page).last.inner_text().strip()
    grown = [t for t in texts if t != "…"]
    assert len(grown) >= 2 and grown[-1] == final and all(final.startswith(t) for t in grown), texts
    assert box.input_value() == "It really hurts"  # typing during the stream lost nothing


def test_what_a_person_types_is_shown_as_text_not_markup(page):
    open_tab(page, "Chat")
    box = page.locator("#chat-input textarea")
    box.fill("# HUGE <b>bold</b> **stars** <img src=x>")
    box.press("Enter")
    user = page.locator("#chat-box [data-testid='user']").last
    user.get_by_text("# HUGE <b>bold</b> **stars** <img src=x>").wait_for()
    assert user.locator("h1, b, strong, img").count() == 0
    wait_for_the_reply(page)
    page.locator("button:has-text('Decoding settings'):visible").first.click()
    assert page.locator("#chat-seed textarea, #chat-seed input").first.input_value() == ""  # random unless set


def test_compare_gets_a_reply_from_every_model(page, shots):
    open_tab(page, "Compare")
    page.locator("#compare-prompt textarea").fill("He was a very good friend of mine. Last month, he passed away.")
    page.locator("#compare-go").click()
    for model in ("EmpathyGAIL", "MLE", "TextGAIL"):  # a reply row each, and a choice in the vote
        page.locator("#compare-best").get_by_text(model, exact=True).wait_for()
        expect(page.locator("#compare-table")).to_contain_text(model, timeout=TIMEOUT_MS)
    page.screenshot(path=str(shots / "compare.png"), full_page=True)


def test_the_arena_hides_the_names_until_the_vote(page, shots):
    open_tab(page, "Arena")
    page.locator("#arena-prompt textarea").fill("I finally finished my thesis today.")
    page.locator("#arena-go").click()
    page.locator("#arena-status").get_by_text("names are shown after your vote").wait_for()
    blind = " ".join(page.locator(f"#arena-{part}").inner_text() for part in ("context", "a", "b", "status"))
    assert not any(name in blind for name in ("EmpathyGAIL", "MLE", "TextGAIL"))
    page.screenshot(path=str(shots / "arena-blind.png"), full_page=True)
    page.locator("#arena-vote-tie").click()
    page.locator("#arena-status").get_by_text("A was").wait_for()
    revealed = page.locator("#arena-status").inner_text()
    assert sum(name in revealed for name in ("EmpathyGAIL", "MLE", "TextGAIL")) == 2
    page.screenshot(path=str(shots / "arena-revealed.png"), full_page=True)


def test_a_tiny_training_run_finishes_and_appears_in_chat(page, shots):
    open_tab(page, "Train")
    steps = page.locator("#train-steps input[type='number']")
    steps.fill("3")
    steps.press("Enter")
    page.locator("#train-start").click()
    page.locator("#train-message").get_by_text("Started").wait_for()
    page.locator("#train-progress").get_by_text("finished").wait_for()
    name = page.locator("#train-progress b").first.inner_text()
    page.wait_for_timeout(3000)
    page.screenshot(path=str(shots / "train.png"), full_page=True)

    open_tab(page, "Chat")
    page.locator("#chat-model input").click()
    page.get_by_role("option", name=name).click()
    box = page.locator("#chat-input textarea")
    before = bot_messages(page).count()
    box.fill("I passed my exam!")
    box.press("Enter")
    bot_messages(page).nth(before).wait_for()


def test_review_and_results_tabs(page, shots):
    open_tab(page, "Review")
    page.locator("#review-note").get_by_text("3 of 3 examples match").wait_for()
    page.screenshot(path=str(shots / "review.png"), full_page=True)
    open_tab(page, "Results")
    page.locator("#results-table").get_by_text("Perplexity per token").first.wait_for()
    page.screenshot(path=str(shots / "results.png"), full_page=True)


def test_nothing_was_fetched_from_outside(page):
    assert page.outside == []
