"""The page of ``ensemble-cnn serve`` in a real headless Chromium (selenium), against the real server.

Needs ``selenium`` (pip) and Debian's ``chromium`` + ``chromium-driver`` (/usr/bin/chromium,
/usr/bin/chromedriver). Without them the tests skip, except under ``CI=true`` where they fail.

Screenshot for the README: ``ENSEMBLE_CNN_SCREENSHOT=docs/serve.png pytest tests/test_serve_browser.py``
writes the page after drawing a 7 (with the stand-in predictor's answer). To picture a real
model instead, start ``ensemble-cnn serve --run DIR`` and also set
``ENSEMBLE_CNN_SCREENSHOT_URL=http://127.0.0.1:8000/``. Without the variable nothing is written
into the repository (the screenshot helper is still exercised, into a temporary folder).
"""
from __future__ import annotations

import io
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from PIL import Image
from test_serve import MEMBERS, StandInPredictor, image_bytes

from ensemble_cnn.inference.serve import make_server, server_url

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--force-color-profile=srgb",
)
WAIT_S = 20


def _missing_browser() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} not found (apt-get install -y chromium chromium-driver)"
    return None


def _require_browser() -> None:
    missing = _missing_browser()
    if missing is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser test needs it in CI: {missing}")
        pytest.skip(missing)


def start_chromium(profile_dir: str, *, width: int = 1100, height: int = 900):
    """Headless Chromium (the closed-network flags, a fresh profile) driven by chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


# Stroke offsets from the pad's centre, in CSS px: a "7" (top bar, then the diagonal).
SEVEN = [(-70, -80), (60, 0), (40, 0), (-30, 50), (-25, 50), (-20, 50)]


def draw(driver, strokes=(SEVEN,)) -> None:
    """Draw on #pad with the mouse: each stroke is a start offset then relative moves."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    pad = driver.find_element(By.ID, "pad")
    for (x, y), *moves in strokes:
        actions = ActionChains(driver).move_to_element_with_offset(pad, x, y).click_and_hold()
        for dx, dy in moves:
            actions.move_by_offset(dx, dy)
        actions.release().perform()


def wait_for_label(driver) -> str:
    """Wait until #label shows a digit; return it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_element(By.ID, "label").text.strip().isdigit())
    return driver.find_element(By.ID, "label").text.strip()


def wait_for_status(driver, text: str) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT_S).until(lambda d: text in d.find_element(By.ID, "status").text)
    return driver.find_element(By.ID, "status").text


def save_screenshot(driver, path: str | Path, *, url: str | None = None) -> Path:
    """Open ``url`` (if given), draw a 7, wait for the vote, save a PNG of the window to ``path``."""
    if url is not None:
        driver.get(url)
        wait_for_status(driver, "ready")
        draw(driver)
        wait_for_label(driver)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = driver.get_window_size()
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size["width"], min(max(height + 4, 300), 2000))  # no empty band below
    try:
        if not driver.save_screenshot(str(path)):
            raise RuntimeError(f"could not save a screenshot to {path}")
    finally:
        driver.set_window_size(size["width"], size["height"])
    return path


# ---- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def predictor() -> StandInPredictor:
    return StandInPredictor()


@pytest.fixture(scope="module")
def url(predictor):
    _require_browser()
    server = make_server(predictor, port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server_url(server)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    assert predictor.overlaps == 0


@pytest.fixture(scope="module")
def driver(url):
    profile = tempfile.mkdtemp(prefix="ensemble-cnn-chromium-")
    driver = start_chromium(profile)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture()
def page(driver, url, predictor):
    """The page freshly loaded, desktop-sized, the stand-in reset."""
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.set_window_size(1100, 900)
    predictor.delay = 0.0
    predictor.fail_with = None
    predictor.verdict = {}
    driver.get(url)
    wait_for_status(driver, "ready")
    driver.get_log("browser")  # start each test with an empty console
    return driver


def members_shown(driver) -> list[dict]:
    return driver.execute_script("""
        return [...document.querySelectorAll('#members .member')].map(row => ({
            label: Number(row.dataset.label),
            name: row.querySelector('.name').textContent,
            disagrees: row.classList.contains('disagrees'),
            bars: row.querySelectorAll('.bar').length,
            top: [...row.querySelectorAll('.bar')].findIndex(b => b.classList.contains('top')),
        }));
    """)


def input28_shown(driver) -> list[list[int]]:
    """The enlarged #input28, sampled back at the centre of each of its 28x28 cells."""
    return driver.execute_script("""
        const c = document.getElementById('input28');
        const ctx = c.getContext('2d');
        const data = ctx.getImageData(0, 0, c.width, c.height).data;
        const s = c.width / 28, rows = [];
        for (let y = 0; y < 28; y++) {
            const row = [];
            for (let x = 0; x < 28; x++) {
                const px = Math.floor((x + 0.5) * s), py = Math.floor((y + 0.5) * s);
                row.push(data[4 * (py * c.width + px)]);
            }
            rows.push(row);
        }
        return rows;
    """)


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


# ---- tests ---------------------------------------------------------------------------------
def test_drawing_shows_the_members_vote(page, predictor, tmp_path):
    from selenium.webdriver.common.by import By

    driver = page
    info = driver.find_element(By.ID, "info").text
    assert "3 members" in info and "nielsen" in info and "99.62%" in info and "majority" in info
    calls = predictor.calls
    draw(driver)
    label = wait_for_label(driver)
    assert wait_for_status(driver, "ready").strip() == "ready"
    assert predictor.calls == calls + 1  # one stroke, one request
    answer = predictor.answers[-1]

    # What the page sent: a square PNG, white background, black ink.
    with Image.open(io.BytesIO(predictor.images[-1])) as sent:
        assert sent.format == "PNG" and sent.width == sent.height >= 200
        gray = sent.convert("L")
        assert gray.getpixel((2, 2)) == 255 and gray.getextrema()[0] < 30
        # The ink is where the mouse went: on the 7's top bar, not in the empty lower right.
        css_side = driver.execute_script("return document.getElementById('pad').clientWidth")
        scale = sent.width / css_side

        def at(dx: float, dy: float) -> int:
            return gray.getpixel((round(sent.width / 2 + dx * scale), round(sent.height / 2 + dy * scale)))

        assert at(-20, -80) < 30 and at(20, -80) < 30 and at(60, 60) == 255 and at(-90, 0) == 255

    # What the page shows: exactly the stand-in's answer for that request.
    assert label == str(answer["label"])
    confidence = driver.find_element(By.ID, "confidence").text
    assert f"{100 * answer['confidence']:.1f}%" in confidence
    assert driver.find_element(By.ID, "agreement").text == f"2 of 3 members say {answer['label']}"
    shown = members_shown(driver)
    assert [m["name"] for m in shown] == list(MEMBERS)
    assert [m["label"] for m in shown] == [m["label"] for m in answer["members"]]
    assert [m["disagrees"] for m in shown] == [m["label"] != answer["label"] for m in answer["members"]]
    assert all(m["bars"] == 10 and m["top"] == m["label"] for m in shown)
    assert input28_shown(driver) == answer["input"]
    assert console_errors(driver) == []  # no CSP violation, no failed request

    # The screenshot helper (into tmp_path; into the repo only when asked for).
    shot = save_screenshot(driver, tmp_path / "serve.png")
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.width >= 800
    target = os.environ.get("ENSEMBLE_CNN_SCREENSHOT")
    if target:
        target_path = Path(target) if Path(target).is_absolute() else REPO_ROOT / target
        save_screenshot(driver, target_path, url=os.environ.get("ENSEMBLE_CNN_SCREENSHOT_URL"))


@pytest.mark.parametrize("verdict, shown, flagged", [
    ({"set": [4, 9], "unsure": True, "not_a_digit": False, "verdict": "unsure"}, "unsure: could be 4 or 9", True),
    ({"set": [], "unsure": True, "not_a_digit": False, "verdict": "unsure"}, "unsure: no label fits well", True),
    ({"set": [7], "unsure": True, "not_a_digit": True, "verdict": "not a digit"}, "this does not look like a digit",
     True),
    ({"set": [7], "unsure": False, "not_a_digit": False, "verdict": "answered"}, "answered", False),
    ({"set": [1, 7], "unsure": False, "not_a_digit": False, "verdict": "answered"},
     "answered; the set: could be 1 or 7", False),
    ({}, "", False),  # a run without calibration digits: no verdict
], ids=["unsure", "empty set", "not a digit", "answered", "answered, two labels", "no calibration"])
def test_the_page_shows_the_verdict(page, predictor, verdict, shown, flagged):
    from selenium.webdriver.common.by import By

    predictor.verdict = verdict
    draw(page)
    wait_for_label(page)
    note = page.find_element(By.ID, "verdict")
    assert note.text == shown and ("flagged" in note.get_attribute("class")) == flagged
    page.find_element(By.ID, "clear").click()
    assert note.text == ""


def test_clear_empties_the_result(page):
    from selenium.webdriver.common.by import By

    driver = page
    draw(driver)
    wait_for_label(driver)
    driver.find_element(By.ID, "clear").click()
    assert driver.find_element(By.ID, "label").text == ""
    assert driver.find_element(By.ID, "confidence").text == ""
    assert driver.find_element(By.ID, "agreement").text == ""
    assert members_shown(driver) == []
    assert driver.find_element(By.ID, "status").text == "ready"
    assert all(v == 0 for row in input28_shown(driver) for v in row)
    pad_is_white = driver.execute_script("""
        const c = document.getElementById('pad');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4) if (d[i] !== 255) return false;
        return true;
    """)
    assert pad_is_white


def test_an_answer_arriving_after_clear_is_ignored(page, predictor):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = page
    predictor.delay = 1.5
    calls, answers = predictor.calls, len(predictor.answers)
    draw(driver)
    # Clear while the request is inside the (slow) predictor; its answer must then be dropped.
    WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(lambda _: predictor.calls == calls + 1)
    assert "thinking" in driver.find_element(By.ID, "status").text
    driver.find_element(By.ID, "clear").click()
    WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(lambda _: len(predictor.answers) == answers + 1)
    driver.execute_script("return new Promise(r => setTimeout(r, 1000))")  # the answer has arrived by now
    assert driver.find_element(By.ID, "label").text == ""
    assert members_shown(driver) == []
    assert driver.find_element(By.ID, "status").text == "ready"
    assert console_errors(driver) == []


def test_upload_and_server_error_shown(page, predictor, tmp_path):
    from selenium.webdriver.common.by import By

    driver = page
    good = tmp_path / "digit.png"
    good.write_bytes(image_bytes(90))
    driver.find_element(By.ID, "upload").send_keys(str(good))
    label = wait_for_label(driver)
    assert predictor.images[-1] == good.read_bytes()  # the file's bytes, untouched
    assert label == str(predictor.answers[-1]["label"])

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    driver.find_element(By.ID, "upload").send_keys(str(bad))
    status = wait_for_status(driver, "not an image")
    assert "\n" not in status and "error" in status
    assert driver.find_element(By.ID, "status").get_attribute("class").split().count("error") == 1
    assert driver.find_element(By.ID, "label").text == ""


def test_server_failure_is_shown_not_alerted(page, predictor):
    from selenium.webdriver.common.by import By

    driver = page
    predictor.fail_with = RuntimeError("model exploded")
    draw(driver)
    status = wait_for_status(driver, "model exploded")
    assert "500" not in status or "RuntimeError" in status
    assert driver.find_element(By.ID, "label").text == ""
    predictor.fail_with = None
    draw(driver)
    wait_for_label(driver)
    assert driver.find_element(By.ID, "status").text == "ready"


def test_phone_layout(page, predictor):
    """375 px wide: no horizontal scroll, stacked layout, 44 px touch targets, touch drawing works."""

    driver = page
    driver.set_window_size(375, 740)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 375, "height": 740, "deviceScaleFactor": 2, "mobile": True})
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
    driver.get(driver.current_url)
    wait_for_status(driver, "ready")

    def no_horizontal_scroll() -> bool:
        return driver.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth")

    assert driver.execute_script("return window.innerWidth") == 375  # the viewport meta tag works
    assert no_horizontal_scroll()
    boxes = driver.execute_script("""
        const box = id => document.getElementById(id).getBoundingClientRect().toJSON();
        return {pad: box('pad'), result: document.querySelector('.result').getBoundingClientRect().toJSON(),
                clear: box('clear'), upload: document.querySelector('label[for=upload]').getBoundingClientRect().toJSON(),
                dpr: window.devicePixelRatio, padWidth: document.getElementById('pad').width,
                padCss: document.getElementById('pad').clientWidth};
    """)
    assert boxes["result"]["top"] >= boxes["pad"]["bottom"]  # stacked
    for name in ("clear", "upload"):
        assert boxes[name]["height"] >= 44 and boxes[name]["width"] >= 44, name
    assert boxes["dpr"] == 2 and boxes["padWidth"] == 2 * boxes["padCss"]  # crisp on a 2x screen

    # Draw with a finger (touch events -> pointer events of type "touch").
    pad = boxes["pad"]
    cx, cy = pad["x"] + pad["width"] / 2, pad["y"] + pad["height"] / 2
    calls = predictor.calls
    driver.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": cx - 60, "y": cy - 60}]})
    for step in range(1, 9):
        driver.execute_cdp_cmd("Input.dispatchTouchEvent", {
            "type": "touchMove", "touchPoints": [{"x": cx - 60 + 15 * step, "y": cy - 60 + 15 * step}]})
    driver.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    label = wait_for_label(driver)
    assert predictor.calls == calls + 1
    assert label == str(predictor.answers[-1]["label"])
    assert no_horizontal_scroll()  # also with the member rows shown
    assert len(members_shown(driver)) == 3
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})


# ---- the real model ------------------------------------------------------------------------
class Recording:
    """The real predictor, recording what it answered (so the test can compare the page with it)."""

    def __init__(self, real):
        self.real, self.answers = real, []

    def predict_image(self, data: bytes) -> dict:
        answer = self.real.predict_image(data)
        self.answers.append(answer)
        return answer

    def info(self) -> dict:
        return self.real.info()


def test_drawing_on_the_real_model(trained_run, tmp_path):
    """A stroke on the page, the real ensemble behind the server: the page shows the members' real votes."""
    _require_browser()
    from selenium.webdriver.common.by import By

    from ensemble_cnn.inference.ensemble import Ensemble
    from ensemble_cnn.inference.predict import ImagePredictor

    recording = Recording(ImagePredictor(Ensemble.load(trained_run)))
    server = make_server(recording, port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    profile = tempfile.mkdtemp(prefix="ensemble-cnn-chromium-")
    driver = start_chromium(profile)
    try:
        driver.get(server_url(server))
        wait_for_status(driver, "ready")
        assert "3 members" in driver.find_element(By.ID, "info").text
        draw(driver)
        label = wait_for_label(driver)
        answer = recording.answers[-1]
        assert label == str(answer["label"])
        shown = members_shown(driver)
        assert [m["name"] for m in shown] == ["member_00", "member_01", "member_02"]
        assert [m["label"] for m in shown] == [m["label"] for m in answer["members"]]
        agree = sum(m["label"] == answer["label"] for m in answer["members"])
        assert driver.find_element(By.ID, "agreement").text == f"{agree} of 3 members say {answer['label']}"
        assert input28_shown(driver) == answer["input"]
        # the verdict fixed on the run's calibration digits, as the server gave it
        verdict = driver.find_element(By.ID, "verdict")
        assert answer["verdict"] in ("answered", "unsure", "not a digit")
        expected = {"answered": "answered", "unsure": "unsure", "not a digit": "this does not look like a digit"}
        assert verdict.text.startswith(expected[answer["verdict"]]), (verdict.text, answer)
        assert ("flagged" in verdict.get_attribute("class")) == (answer["verdict"] != "answered")
        assert console_errors(driver) == []
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
