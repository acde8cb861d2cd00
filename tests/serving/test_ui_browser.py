"""`instantid ui` in headless Chromium (Debian's chromium, driven by Playwright; no browser download):
upload a real photo, preview its keypoints, choose a scheduler, a LoRA scale and a canny photo, generate on
the tiny model, check the gallery and parameters. The UI runs with `--controlnet canny` and the tiny LoRA."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
import requests
from PIL import Image
from urllib.parse import urljoin

from serve_server import free_port

pytestmark = pytest.mark.slow


@contextmanager
def ui_process(state: Path, *options: str):
    """`instantid ui --tiny OPTIONS` on a free port; yields its URL once it answers."""
    pytest.importorskip("gradio")
    port = free_port()
    log = open(state / "ui.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "instantid", "ui", "--tiny", "--port", str(port), "--state-dir",
                                str(state / "state"), *options], stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, (state / "ui.log").read_text()[-3000:]
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "UI did not come up"
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture(scope="module")
def browser():
    """One Chromium for the module: Playwright's sync API allows one running instance per thread."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not on PATH; .ci/run installs it (apt-get install chromium)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@contextmanager
def browser_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(url)
    page.wait_for_selector("#generate")
    yield page
    page.close()


@pytest.fixture(scope="module")
def ui_url(tmp_path_factory, tiny_lora):
    with ui_process(tmp_path_factory.mktemp("ui"), "--controlnet", "canny", "--lora", f"{tiny_lora}:0.5") as url:
        yield url


@pytest.fixture(scope="module")
def page(browser, ui_url):
    with browser_page(browser, ui_url) as page:
        yield page


def test_generate_sits_by_the_prompt(page):
    """With --tiny the advanced settings are open; the button still comes right after the prompt and style, on
    the first screen, not below the settings."""
    page.reload()
    page.wait_for_selector("#generate")
    button, style, advanced = (page.locator(f"#{name}").bounding_box() for name in ("generate", "style", "scheduler"))
    assert style["y"] < button["y"] < advanced["y"]
    assert button["y"] + button["height"] <= page.viewport_size["height"]


def test_no_face_is_a_clear_message(page, blank):
    page.locator("#faces input[type=file]").set_input_files(str(blank))
    page.wait_for_timeout(500)
    page.click("#preview")
    page.get_by_text("no usable face").first.wait_for(timeout=30000)


def test_bad_photo_is_a_clear_message(page, tmp_path):
    page.reload()
    page.wait_for_selector("#generate")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    page.locator("#faces input[type=file]").set_input_files(str(bad))
    page.wait_for_timeout(500)
    page.click("#preview")
    page.get_by_text("broken.jpg").first.wait_for(timeout=30000)
    assert page.get_by_text(str(tmp_path)).count() == 0  # no server paths in messages


def test_generate_in_the_browser(page, photos, tmp_path_factory):
    page.reload()  # a fresh form (the no-face test left a photo and a message)
    page.wait_for_selector("#generate")
    page.locator("#faces input[type=file]").set_input_files(str(photos["astronaut"]))
    page.locator("#num_inference_steps input[type=number]").fill("2")
    page.locator("#num_inference_steps input[type=number]").press("Enter")
    page.locator("#seed input").fill("5")
    page.locator("#prompt textarea").fill("an astronaut on the moon")
    page.wait_for_timeout(500)
    page.click("#preview")
    page.wait_for_selector("#keypoints img", timeout=30000)
    page.get_by_text("using the largest").first.wait_for(timeout=30000)
    page.locator("#scheduler input").click()
    page.get_by_role("option", name="euler_a", exact=True).click()
    page.locator("#lora_sketch input[type=number]").fill("0.8")
    page.locator("#lora_sketch input[type=number]").press("Enter")
    page.locator("#canny_photo input[type=file]").set_input_files(str(photos["t1"]))
    page.wait_for_timeout(500)
    page.click("#generate")
    page.wait_for_selector("#gallery img", timeout=120000)
    # the panel shows the parameters (CodeMirror renders only its visible lines: read the full set from the PNG)
    page.wait_for_function("document.querySelector('#parameters').innerText.includes('\"command\": \"serve\"')",
                           timeout=30000)
    source = page.locator("#gallery img").first.get_attribute("src")
    png = Image.open(io.BytesIO(page.request.get(urljoin(page.url, source)).body()))
    parameters = json.loads(png.text["parameters"])
    assert parameters["user_prompt"] == "an astronaut on the moon"
    assert parameters["num_inference_steps"] == 2 and parameters["seed"] == 5
    assert (parameters["width"], parameters["height"]) == (128, 128) and parameters["faces"] == parameters["faces_used"] == 1
    assert parameters["scheduler"] == "euler_a" and parameters["loras"] == "sketch:0.8"
    assert parameters["control_scales"] == {"canny": 0.3}
    panel = page.locator("#parameters .cm-content").inner_text()
    assert '"scheduler": "euler_a"' in panel and '"canny": 0.3' in panel
    page.locator("#gallery").scroll_into_view_if_needed()  # its images load lazily, once in view
    page.wait_for_function("(() => { const img = document.querySelector('#gallery img'); "
                           "return img && img.complete && img.naturalWidth > 0; })()", timeout=30000)
    assert page.locator("#gallery img").first.evaluate("img => img.naturalWidth") == 128
    # the artifact: under $INSTANTID_TEST_ARTIFACTS when set (CI keeps it), else in pytest's temporary folder
    artifacts = os.environ.get("INSTANTID_TEST_ARTIFACTS") or tmp_path_factory.mktemp("ui-artifacts")
    artifacts = Path(artifacts)
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "instantid-ui.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot: {screenshot}")
    assert screenshot.stat().st_size > 10000


@pytest.fixture(scope="module")
def flux_page(browser, tmp_path_factory):
    """`instantid ui --tiny --family flux` in the browser."""
    with ui_process(tmp_path_factory.mktemp("ui-flux"), "--family", "flux") as url, browser_page(browser, url) as page:
        yield page


def test_flux_generate_in_the_browser(flux_page, photos):
    """A FLUX job from the UI: FLUX's knobs (true CFG; no adapter strength, no sampler choice), FLUX defaults."""
    page = flux_page
    assert page.locator("#ip_adapter_scale").count() == 0 or not page.locator("#ip_adapter_scale").is_visible()
    assert page.locator("#true_cfg_scale").is_visible()
    page.locator("#faces input[type=file]").set_input_files(str(photos["astronaut"]))
    page.locator("#num_inference_steps input[type=number]").fill("2")
    page.locator("#num_inference_steps input[type=number]").press("Enter")
    page.locator("#prompt textarea").fill("a portrait, cinematic")
    page.wait_for_timeout(500)
    page.click("#generate")
    page.wait_for_selector("#gallery img", timeout=120000)
    page.wait_for_function("document.querySelector('#parameters').innerText.includes('\"command\": \"serve\"')",
                           timeout=30000)
    source = page.locator("#gallery img").first.get_attribute("src")
    png = Image.open(io.BytesIO(page.request.get(urljoin(page.url, source)).body()))
    parameters = json.loads(png.text["parameters"])
    assert parameters["family"] == "flux" and parameters["num_inference_steps"] == 2
    assert parameters["guidance_scale"] == 3.5 and parameters["controlnet_conditioning_scale"] == 1.0
    assert parameters["true_cfg_scale"] == 1.0 and "ip_adapter_scale" not in parameters
