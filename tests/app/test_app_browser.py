"""End to end in a real browser: Playwright drives Debian's Chromium (``apt-get install chromium``; never
``playwright install``) against the locally launched app.

Two browser contexts (two people) use the app at the same time: Alice loads the shipped CartPole model and
runs hybrid adaptation alone (the mode control) on out-of-range physics, Bob meta-trains a model of his own;
each keeps their own model, and the About tab cites the papers. No request may leave 127.0.0.1. ``APP_SCREENSHOT=docs/images/app_adaptation.png`` also saves Alice's adaptation tab
there (the README's screenshot comes from this run). A second test opens the Self-improvement tab,
attaches to its default folder (no loop there yet) and runs one tiny cycle of the loop.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from ssm_metarl.app.about import REFERENCES

pytest.importorskip("playwright", reason="needs the app extra: pip install -e '.[app]'")
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
JOB_TIMEOUT_MS = 150_000
expect.set_options(timeout=60_000)  # a page's first load on a loaded 2-core machine can take longer than 5 s

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: apt-get install chromium (.ci/run does)"
)


def set_slider(page: Page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def model_options(page: Page) -> list[str]:
    """The choices of the adaptation tab's model dropdown, as this page sees them."""
    page.locator("#adapt-model input").click()
    options = page.get_by_role("option")
    expect(options.first).to_be_visible()
    labels = [options.nth(i).get_attribute("aria-label") or "" for i in range(options.count())]
    page.keyboard.press("Escape")
    return labels


def test_two_people_load_adapt_and_train_in_the_browser(app_url, shipped_model, tmp_path):
    external: list[str] = []

    def guard(route) -> None:  # let local requests through; record and refuse anything else
        url = route.request.url
        if urlparse(url).hostname == "127.0.0.1" or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            external.append(url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pages = []
        for _ in range(2):
            context = browser.new_context(viewport={"width": 1400, "height": 1100})
            context.route("**/*", guard)
            pages.append(context.new_page())
        alice, bob = pages
        alice.goto(app_url)
        bob.goto(app_url)

        # Alice loads the shipped model and reads its card.
        expect(alice.locator("#load-model input")).to_have_value(shipped_model)
        alice.click("#load-button")
        expect(alice.locator("#load-status")).to_contain_text(f"Loaded {shipped_model}")
        expect(alice.locator("#model-facts")).to_contain_text("cartpole-physics")
        expect(alice.locator("#model-facts")).to_contain_text("parameters")
        expect(alice.locator("#zero-shot")).to_contain_text("held-out tasks")
        expect(alice.locator("#model-card")).to_contain_text(shipped_model)

        # Bob's adaptation tab opens on the model whose adaptation shows (navigation, in context).
        bob.get_by_role("tab", name="Test-time adaptation").click()
        expect(bob.locator("#adapt-model input")).to_have_value("navigation-ssm")
        # Bob meta-trains his own model while Alice runs the adaptation comparison.
        bob.get_by_role("tab", name="Meta-training").click()
        for elem_id, value in (("train-iterations", 1), ("train-batch", 1), ("train-trajectories", 2)):
            set_slider(bob, elem_id, value)
        bob.locator("#train-name input, #train-name textarea").first.fill("bobs-model")
        bob.click("#train-button")

        alice.get_by_role("tab", name="Test-time adaptation").click()
        expect(alice.locator("#adapt-model input")).to_have_value(shipped_model)
        alice.locator("#adapt-tasks").get_by_text("out-of-range").click()
        alice.locator("#adapt-mode").get_by_text("hybrid", exact=True).click()
        for elem_id, value in (
            ("adapt-num-tasks", 1),
            ("adapt-steps", 2),
            ("adapt-seeds", 2),
            ("adapt-trajectories", 2),
        ):
            set_slider(alice, elem_id, value)
        alice.click("#adapt-button")

        expect(bob.locator("#train-status")).to_contain_text("saved as bobs-model", timeout=JOB_TIMEOUT_MS)
        expect(bob.locator("#train-plot img")).to_be_visible()

        expect(alice.locator("#adapt-status")).to_contain_text("Done", timeout=JOB_TIMEOUT_MS)
        expect(alice.locator("#adapt-status")).to_contain_text("adapted (hybrid)")
        expect(alice.locator("#adapt-plot img")).to_be_visible()
        table = alice.locator("#adapt-table")
        for text in ("random policy", "0 steps", "1 step", "2 steps", "hybrid"):
            expect(table).to_contain_text(text)
        expect(table).not_to_contain_text("standard")  # only the chosen mode: no standard row, no difference
        assert re.search(r"\d+\.\d ± \d+\.\d", table.inner_text())
        expect(alice.locator("#adapt-summary")).to_contain_text("cartpole-physics: 1 task(s) x 2 seeds")
        expect(alice.locator("#adapt-summary")).to_contain_text("hybrid replay buffer")
        expect(alice.locator("#adapt-episode img")).to_have_attribute("src", re.compile(r"\.gif"))
        expect(alice.locator("#adapt-render-note")).to_contain_text("of hybrid adaptation")
        alice.wait_for_timeout(500)  # let the animation's first frames paint before the picture
        alice.screenshot(path=tmp_path / "app_adaptation.png", full_page=True)
        if os.environ.get("APP_SCREENSHOT"):
            shutil.copyfile(tmp_path / "app_adaptation.png", os.environ["APP_SCREENSHOT"])

        # Each keeps their own model: Bob's is his choice and Alice never sees it.
        bob.get_by_role("tab", name="Test-time adaptation").click()
        expect(bob.locator("#adapt-model input")).to_have_value("bobs-model")
        assert {"bobs-model", shipped_model} <= set(model_options(bob))
        expect(alice.locator("#adapt-model input")).to_have_value(shipped_model)
        assert "bobs-model" not in model_options(alice)

        # The other tabs are there and alive.
        alice.get_by_role("tab", name="About").click()
        expect(alice.locator("#architecture svg")).to_be_visible()
        refs = alice.locator("#about-references")
        for ref in REFERENCES:  # every paper, linked
            expect(refs.locator(f'a[href="{ref.url}"]')).to_have_text(ref.title)
            expect(refs).to_contain_text(f"{ref.authors} ({ref.year})")
        alice.get_by_role("tab", name="Meta-training").click()
        expect(alice.locator("#train-button")).to_be_visible()
        alice.get_by_role("tab", name="Load pre-trained model").click()
        expect(alice.locator("#model-facts")).to_contain_text(shipped_model)
        browser.close()

    assert external == [], f"the page requested outside 127.0.0.1: {external}"


def test_the_self_improvement_tab_attaches_and_runs_a_tiny_loop(app_url):
    """The tab is there; attaching to its default folder (no loop yet) says so; a run with the fastest
    preset (1 cycle, 1 candidate) streams to the page and ends with its decisions in the table."""
    pytest.importorskip("optuna", reason="the self-improvement loop needs the rsi extra")
    from ssm_metarl.app.improvement import BUDGETS

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1100})
        context.route(
            "**/*",
            lambda route: (
                route.continue_() if urlparse(route.request.url).hostname == "127.0.0.1" else route.abort()
            ),
        )
        page = context.new_page()
        page.goto(app_url)
        page.get_by_role("tab", name="Self-improvement").click()
        expect(page.locator("#rsi-family input")).to_have_value("navigation-2d")
        page.click("#rsi-refresh")
        expect(page.locator("#rsi-status")).to_contain_text("does not exist")
        expect(page.locator("#rsi-status")).to_contain_text("ssm-metarl rsi start --out_dir")

        page.locator("#rsi-budget").get_by_text(next(iter(BUDGETS))).click()
        set_slider(page, "rsi-cycles", 1)
        set_slider(page, "rsi-candidates", 1)
        page.click("#rsi-start")
        expect(page.locator("#rsi-status")).to_contain_text("Done: 1 cycles done", timeout=JOB_TIMEOUT_MS)
        table = page.locator("#rsi-decisions")
        for kind in ("started", "trial"):
            expect(table).to_contain_text(kind)
        expect(page.locator("#rsi-plot img")).to_be_visible()
        expect(page.locator("#rsi-incumbent")).to_contain_text("Incumbent")
        expect(page.locator("#rsi-folder input, #rsi-folder textarea").first).to_have_value(
            re.compile(r"rsi-1$")
        )
        page.click("#rsi-stop")
        expect(page.locator("#rsi-stop-status")).to_contain_text("Nothing to stop")
        browser.close()
