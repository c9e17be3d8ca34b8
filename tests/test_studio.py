"""The web studio in a real browser (headless Chromium through Selenium): the page loads,
generates, draws the piano roll, renders audio the page can play, infills a bar, and logs no
console error. Skipped, with the reason, where no browser can be had."""

from __future__ import annotations

import shutil
import socket
import threading
import time

import pytest

from aurl.serve.app import create_app
from aurl.serve.limits import Limits
from aurl.serve.models import Models

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="no headless browser: apt-get install chromium chromium-driver (.ci/run does)",
)


@pytest.fixture(scope="module")
def studio_url(tiny_run, feature_run, tmp_path_factory):
    import uvicorn

    runs = tmp_path_factory.mktemp("studio-runs")
    (runs / "tiny").symlink_to(tiny_run)
    (runs / "features").symlink_to(feature_run)
    app = create_app(Models(runs, "features", threads=2), Limits(max_bars=8))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1400,900",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    except Exception as err:  # a browser that will not start here
        pytest.skip(f"headless Chromium would not start: {str(err).splitlines()[0]}")
    yield driver
    driver.quit()


def _wait(driver, condition, what: str, seconds: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.1).until(lambda d: condition(d))
    except Exception:
        status = driver.find_element("id", "status").text
        raise AssertionError(f"{what} did not happen; the page says {status!r}") from None


def _status_done(driver, label: str) -> bool:
    text = driver.find_element("id", "status").text
    assert "class=\"error\"" not in text and not driver.find_element(
        "id", "status").get_attribute("class"), text  # fmt: skip
    return text == f"{label}: done"


def test_the_studio_generates_draws_plays_and_infills(browser, studio_url):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import Select

    browser.get(studio_url)
    _wait(browser, lambda d: d.find_element("id", "status").text.startswith("Ready"), "loading")
    model = Select(browser.find_element("id", "model"))
    model.select_by_value("bach-small")  # music to look at; "features" has infilling
    _wait(browser, lambda d: _status_done(d, "Loading"), "changing the model")
    browser.find_element("id", "bars").clear()
    browser.find_element("id", "bars").send_keys("3")
    browser.find_element("id", "seed").send_keys("7")
    browser.find_element("id", "steer").send_keys("1")
    browser.find_element("id", "generate").click()
    _wait(browser, lambda d: _status_done(d, "Generating"), "generating")
    roll = browser.find_element("id", "roll")
    drawn = int(roll.get_attribute("data-notes") or 0)
    facts = browser.find_element("id", "facts").text
    assert drawn > 0 and f"{drawn} notes" in facts, facts

    browser.find_element("id", "play").click()
    _wait(browser, lambda d: _status_done(d, "Rendering"), "rendering")
    duration = browser.execute_script("return document.getElementById('player').duration")
    assert duration and duration > 1.0
    assert "disabled" not in browser.find_element("id", "download-wav").get_attribute("class")

    bars = browser.execute_script("return state.piece.bar_starts.length")
    model.select_by_value("features")
    _wait(browser, lambda d: _status_done(d, "Loading"), "changing the model")
    width = roll.size["width"]
    ActionChains(browser).move_to_element_with_offset(roll, -width // 2 + 5, 0).click().perform()
    assert browser.find_element("id", "selection").text == "Bar 1"
    before = browser.execute_script("return state.piece.midi")
    browser.find_element("id", "guidance").send_keys("2")
    assert browser.execute_script("return sampling().guidance") == 2  # sent with the request
    browser.find_element("id", "infill").click()
    _wait(browser, lambda d: _status_done(d, "Regenerating"), "infilling")
    after = browser.execute_script("return state.piece")
    assert after["midi"] != before and len(after["bar_starts"]) >= bars - 1

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
