"""End to end in headless Chromium: open the studio, pick a preset, Start, watch, Stop, Resume.

Needs Debian's `chromium` (driven by Playwright through executable_path; Playwright never downloads a
browser here). Without it the test is skipped and says why. Screenshots of each tab go to
$LORA_STUDIO_SCREENSHOTS (docs/screenshots to refresh the README's) or to the test's tmp folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lora_studio import paths, worker

pytestmark = pytest.mark.slow

PRESET = """schema_version = 1
epochs = 12
repeats = 1
batch_size = 2
resolution = 64
min_bucket_reso = 32
max_bucket_reso = 128
network_dim = 4
network_alpha = 4.0
sample_prompts = ["tibbie, sheep"]
sample_steps = 2
"""


def chromium_path() -> str:
    """The system Chromium, or skip with the reason."""
    found = os.environ.get("LORA_STUDIO_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("no Chromium on this machine: install Debian's 'chromium' package (apt-get install -y chromium) "
                    "to run the browser test")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the Playwright Python package is missing: pip install -e '.[test]'")
    return found


def wait_for_url(log: Path, proc: subprocess.Popen, timeout: float = 240.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"LoRA Studio: (http://\S+)", log.read_text() if log.exists() else "")
        if match:
            return match.group(1)
        if proc.poll() is not None:
            raise AssertionError(f"launch.py exited with {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.2)
    raise AssertionError(f"launch.py printed no URL:\n{log.read_text()}")


def stop_worker_started_by_the_studio() -> None:
    """The studio starts a worker that outlives a page; end it (by its pid) so no process is left behind."""
    pid = worker.holder_pid()
    if pid is None or not worker.lock_is_held():
        return
    os.kill(pid, signal.SIGTERM)  # the worker stops its job cleanly and exits
    deadline = time.monotonic() + 60
    while worker.lock_is_held():
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.2)


@contextlib.contextmanager
def running_studio(studio_home: Path, tmp_path: Path, *launch_args: str):
    """launch.py as a user runs it, in its own process; yields the URL, then stops it and its worker."""
    log = tmp_path / "studio.log"
    # One torch thread in the worker: on a shared 2-core CI machine, thread oversubscription makes the
    # tiny model's steps several times slower.
    env = {**os.environ, "LORA_STUDIO_HOME": str(studio_home), "GRADIO_ANALYTICS_ENABLED": "False",
           "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        # --port 0: any free port, so tests running side by side never wait on 7860 (launch.py's default).
        proc = subprocess.Popen([sys.executable, str(paths.project_root() / "launch.py"), "--no-browser", "--port", "0",
                                 *launch_args], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield wait_for_url(log, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        stop_worker_started_by_the_studio()


@contextlib.contextmanager
def browser_page(url: str):
    """A headless Chromium page at 1500x1300 on url, closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.goto(url)
            yield page
        finally:
            browser.close()


@pytest.fixture
def studio(studio_home, tiny_model_dir, tiny_frames, tmp_path):
    """The studio on a tiny model and frame folder, with a tiny preset saved."""
    (studio_home / "presets").mkdir(parents=True)
    (studio_home / "presets" / "tiny-e2e.toml").write_text(PRESET)
    with running_studio(studio_home, tmp_path, "--base", str(tiny_model_dir), "--dataset", str(tiny_frames),
                        "--name", "tibbie", "--trigger", "tibbie") as url:
        yield url


def screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("LORA_STUDIO_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def loss_points(page) -> int:
    """How many points the loss plot's raw and smoothed lines have (Vega draws them as SVG paths)."""
    paths_d = page.locator("#loss-plot path[aria-roledescription='line mark']").evaluate_all(
        "els => els.map(e => e.getAttribute('d') || '')")
    return sum(d.count("L") + 1 for d in paths_d if d)


def status_state(page) -> str:
    return page.locator("#monitor-status b[data-state]").get_attribute("data-state") or ""


def test_start_watch_stop_and_resume_a_run_in_the_browser(studio, studio_home, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = screenshot_dir(tmp_path)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.goto(studio)

            # One click on a preset fills every field, and the step budget follows.
            page.locator("#preset input").click()
            page.get_by_role("option", name="tiny-e2e").click()
            expect(page.locator("#field-epochs input")).to_have_value("12")
            expect(page.locator("#step-budget")).to_contain_text("8 frames × 1 repeats × 12 epochs ÷ batch 2 = 48 steps")

            page.locator("#start-button").click()
            expect(page.locator("#form-message")).to_contain_text("queued as")
            # the run remembers its preset, for the recipe a shared grid names
            assert 'preset = "tiny-e2e"' in next((studio_home / "runs").glob("*/job.toml")).read_text()
            page.wait_for_function("() => document.querySelectorAll(\"#loss-plot path[aria-roledescription='line mark']\").length > 0",
                                   timeout=180_000)
            expect(page.locator("#epoch-files")).to_contain_text("tibbie-000001.safetensors", timeout=180_000)
            assert loss_points(page) >= 2
            page.screenshot(path=str(shots / "train.png"), full_page=True)

            # Twelve epochs: Stop lands mid-run, not after the last step.
            page.locator("#stop-button").click()
            expect(page.locator("#monitor-status b[data-state='stopped']")).to_be_visible(timeout=180_000)
            expect(page.locator("#resume-button")).to_be_enabled()

            # A reopened page shows the run where it is, from its files alone.
            page.reload()
            expect(page.locator("#monitor-status b[data-state='stopped']")).to_be_visible(timeout=30_000)
            page.wait_for_function("() => document.querySelectorAll(\"#loss-plot path[aria-roledescription='line mark']\").length > 0",
                                   timeout=30_000)

            page.locator("#resume-button").click()
            expect(page.locator("#monitor-status b[data-state='done']")).to_be_visible(timeout=240_000)
            expect(page.locator("#epoch-files")).to_contain_text("tibbie-000012.safetensors")
            expect(page.locator("#samples img").first).to_be_visible()
            page.screenshot(path=str(shots / "train-finished.png"), full_page=True)

            page.get_by_role("tab", name="Runs").click()
            expect(page.locator("#runs-table")).to_contain_text("done", timeout=30_000)
            page.screenshot(path=str(shots / "runs.png"), full_page=True)
        finally:
            browser.close()
