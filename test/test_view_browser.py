"""`nsm dataset view --web` seen in a real browser: Debian's chromium (headless, software GL)
driven by Playwright opens Rerun's web viewer on a recorded episode, and the screenshot
shows the episode's camera images (the scene's yellow arm and pink cube, drawn by the
viewer from the recording), not a loading or empty page."""
import os
import shutil
import time
from pathlib import Path

import numpy as np

from helpers import web_view
from nsm.app.demo import Demo
from nsm.app.demo_settings import demo_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOT = Path(os.environ.get("NSM_SCREENSHOT_DIR", "")) if os.environ.get("NSM_SCREENSHOT_DIR") else None


def scene_pixels(png: bytes) -> tuple[int, int]:
    """(yellow arm pixels, pink cube pixels) in a screenshot: colours only the camera images have."""
    import cv2

    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    yellow = (r > 200) & (g > 170) & (b < 90)
    pink = (r > 200) & (g < 170) & (b > 200)
    return int(yellow.sum()), int(pink.sum())


def test_the_web_viewer_shows_the_episode_in_chromium(tmp_path):
    assert CHROMIUM, "Debian's chromium is missing: bash scripts/setup.sh --test installs it"
    from playwright.sync_api import sync_playwright

    out = tmp_path / "demo"
    Demo(demo_config(seconds=2.0, out=out, db_url=f"sqlite:///{out / 'telemetry.db'}")).run()
    with web_view(out) as (url, _, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(url)
        deadline, shot, found = time.monotonic() + 120, b"", (0, 0)
        while time.monotonic() < deadline:
            time.sleep(2)
            shot = page.screenshot()
            found = scene_pixels(shot)
            if found[0] > 500 and found[1] > 20:
                break
        browser.close()
    (tmp_path / "view.png").write_bytes(shot)
    if SHOT is not None:
        SHOT.mkdir(parents=True, exist_ok=True)
        (SHOT / "view_episode.png").write_bytes(shot)
    assert found[0] > 500 and found[1] > 20, f"the viewer never drew the episode's images (yellow, pink: {found})"
