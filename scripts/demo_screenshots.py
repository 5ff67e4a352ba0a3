"""Refresh the README's screenshots from the built-in demo: the toy model, the demo frames, the demo preset.

    python scripts/demo_screenshots.py                 # → docs/screenshots/*.png, ~2 min on 2 CPU cores
    python scripts/demo_screenshots.py --out /tmp/shots

Starts `launch.py` as a user would (in a throwaway studio folder, so your own runs and reviews are
untouched), then in headless Chromium: reviews the demo frames and excludes the worst one, trains the
demo preset to the end, and plots its epochs against LoRA weights in the XY tab. Needs what the
browser tests need: Debian's `chromium` and the Playwright package (`bash scripts/setup.sh --test`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="lora-studio-shots-"))
    os.environ["LORA_STUDIO_HOME"] = str(home)  # before lora_studio reads it
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.path.insert(0, str(ROOT / "tests" / "ui"))
    from test_studio_browser import chromium_path, running_studio  # the browser tests' launcher

    import pytest

    try:
        chromium = chromium_path()
    except pytest.skip.Exception as missing:  # the browser test's own words on what to install
        sys.exit(f"cannot take screenshots: {missing}")
    from playwright.sync_api import expect, sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with running_studio(home, home, "--name", "tibbie", "--trigger", "tibbie") as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(url)
            review_and_exclude_the_worst_frame(page, expect)
            page.screenshot(path=str(args.out / "dataset.png"), full_page=True)

            page.get_by_role("tab", name="Train").click()
            page.locator("#start-button").click()
            expect(page.locator("#form-message")).to_contain_text("queued as", timeout=30_000)
            expect(page.locator("#epoch-files")).to_contain_text("tibbie-000001.safetensors", timeout=300_000)
            page.screenshot(path=str(args.out / "train.png"), full_page=True)
            expect(page.locator("#monitor-status b[data-state='done']")).to_be_visible(timeout=600_000)
            expect(page.locator("#samples img").first).to_be_visible(timeout=30_000)
            page.screenshot(path=str(args.out / "train-finished.png"), full_page=True)

            page.get_by_role("tab", name="Runs").click()
            expect(page.locator("#runs-table")).to_contain_text("done", timeout=30_000)
            page.screenshot(path=str(args.out / "runs.png"), full_page=True)

            plot_epochs_against_weights(page, expect, run=next((home / "runs").iterdir()).name)
            page.screenshot(path=str(args.out / "xy.png"), full_page=True)
        finally:
            browser.close()
    print(f"screenshots in {args.out}")


def review_and_exclude_the_worst_frame(page, expect) -> None:
    """Dataset tab: review the demo frames; the first tile is the most flagged one."""
    page.get_by_role("tab", name="Dataset").click()
    page.locator("#dataset-review-button").click()
    expect(page.locator("#dataset-kept")).to_contain_text("kept:", timeout=60_000)
    page.locator("#dataset-gallery .thumbnail-lg").first.click()
    expect(page.locator("#dataset-frame-details")).to_contain_text("kept for training", timeout=10_000)
    page.locator("#dataset-reason textarea, #dataset-reason input").fill("distorted action frame")
    page.locator("#dataset-exclude-button").click()
    expect(page.locator("#dataset-frame-details")).to_contain_text("excluded: distorted action frame", timeout=10_000)


def plot_epochs_against_weights(page, expect, run: str) -> None:
    """XY tab: the finished run, its default axes (every epoch × the seed write-up's weights)."""
    page.get_by_role("tab", name="XY plot").click()
    page.locator("#xy-refresh").click()
    page.locator("#xy-run input").click()
    page.get_by_role("option", name=run).click()
    expect(page.locator("#xy-prompt textarea")).not_to_have_value("", timeout=30_000)
    page.locator("#xy-generate").click()
    expect(page.locator("#xy-message")).to_contain_text("is queued as", timeout=30_000)
    expect(page.locator("#xy-status b[data-state='done']")).to_be_visible(timeout=600_000)
    expect(page.locator("#xy-grid img")).to_be_visible(timeout=30_000)


if __name__ == "__main__":
    main()
