"""The voice playground in a browser we did not write: Debian's Chromium, headless, driven by
Playwright against a real node's HTTP port.

The page streams a LoRA voice over SSE and plays it on Web Audio (headless Chromium has no
sound card; its audio clock still runs, so `onended` fires in real time and the page's
"audio played" figure is what was heard). The test reads the page's own figures from the DOM
and checks them against the server's, then asks for a voice nobody has and reads the
server's error off the page.

ORPHEUS_WRITE_SCREENSHOT=1 refreshes docs/playground.png (the README shows it); otherwise the
screenshot goes to the test's tmp_path.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright
from support_server import free_port

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "playground.png"
NODE_ID = "playground-node"
LORA_VOICE = "nova"
# tiny-random never says stop: a text's token budget is its audio ("Hi <laugh>": 2.1 s), and
# the page plays it in real time.
TEXT = "Hi"
SAMPLE_RATE = 24_000

BASE_VOICES = ["tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"]
TAGS = ["<laugh>", "<chuckle>", "<sigh>", "<cough>", "<sniffle>", "<groan>", "<yawn>", "<gasp>"]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium not found: `make test` installs it (apt chromium)")
    return path


def wait_for_voice(url: str, voice: str, timeout: float = 30.0) -> None:
    """Block until the node's HTTP port lists `voice` (the port may open after gRPC health)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if voice in [v["id"] for v in json.load(resp)["voices"]]:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not list {voice!r} within {timeout} s")
        time.sleep(0.1)


def figure(page: Page, element_id: str) -> str:
    return page.get_attribute(f"#{element_id}", "data-value") or ""


def wait_state(page: Page, *states: str, timeout_s: float = 60.0) -> str:
    selector = ", ".join(f"#playground[data-state={s}]" for s in states)
    page.wait_for_selector(selector, timeout=timeout_s * 1000)
    return page.get_attribute("#playground", "data-state") or ""


def test_playground_streams_a_voice_and_shows_errors(server_factory, tmp_path: Path) -> None:
    executable = chromium_path()
    voices_dir = tmp_path / "voices"
    voices_dir.mkdir()
    http_port = free_port()
    server = server_factory(
        "--http-port", str(http_port),
        "--node-id", NODE_ID,
        "--voices-dir", str(voices_dir),
        start=False,
    )  # fmt: skip
    server.start(wait=False)
    # While the node boots, the LoRA voice (torch and PEFT load here, not at collection);
    # written beside the directory and moved in whole, as a deploy would.
    from support_adapters import write_voice

    write_voice(tmp_path / LORA_VOICE, seed=3).rename(voices_dir / LORA_VOICE)
    server.wait_ready()
    base = f"http://127.0.0.1:{http_port}"
    wait_for_voice(f"{base}/v1/audio/voices", LORA_VOICE)

    with sync_playwright() as pw:
        # The Speak click is a real input event (a user gesture), so the AudioContext would
        # start anyway; the flag keeps the test independent of Chromium's autoplay rules.
        browser = pw.chromium.launch(
            executable_path=executable, args=["--autoplay-policy=no-user-gesture-required"]
        )
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 760})
            page_errors: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            page.goto(base + "/")
            assert wait_state(page, "ready", "error") == "ready", page.text_content("#error")

            # Voices from /v1/audio/voices: the base eight and the LoRA voice on disk.
            voices = page.eval_on_selector_all("#voice option", "os => os.map(o => o.value)")
            assert set(BASE_VOICES) <= set(voices), voices
            lora = page.eval_on_selector_all(
                "#voice optgroup[label='LoRA voices'] option", "os => os.map(o => o.value)"
            )
            assert lora == [LORA_VOICE]
            tags = page.eval_on_selector_all("#tags [data-tag]", "bs => bs.map(b => b.dataset.tag)")
            assert tags == TAGS
            assert page.input_value("#model")

            # Speak: LoRA voice, text with a tag inserted by its button.
            page.select_option("#voice", LORA_VOICE)
            page.fill("#text", TEXT)
            page.click("#tags [data-tag='<laugh>']")
            assert page.input_value("#text") == f"{TEXT} <laugh>"
            page.click("#speak")
            assert wait_state(page, "done", "error") == "done", page.text_content("#error")

            received_bytes = int(figure(page, "bytes-received"))
            received_s = float(figure(page, "audio-seconds"))
            played_s = float(figure(page, "played-seconds"))
            server_s = float(figure(page, "server-audio-seconds"))
            assert received_bytes > 0 and received_bytes % 2 == 0
            assert received_s == pytest.approx(received_bytes / 2 / SAMPLE_RATE)
            assert played_s == pytest.approx(received_s, abs=1e-6), "all audio received played"
            assert played_s == pytest.approx(server_s, abs=0.005), "the page heard what was sent"
            assert float(figure(page, "ttfa-client")) > 0
            assert float(figure(page, "ttfa-server")) > 0
            assert float(figure(page, "head-silence-ms")) >= 0
            assert figure(page, "node-id") == NODE_ID
            assert page.is_hidden("#error")
            # The voice was loaded to speak: the page relabels it from /v1/audio/voices.
            page.wait_for_function(
                "v => [...document.querySelectorAll('#voice option')]"
                ".some(o => o.value === v && o.text.endsWith('(loaded)'))",
                arg=LORA_VOICE,
            )

            shot = SCREENSHOT if os.environ.get("ORPHEUS_WRITE_SCREENSHOT") else tmp_path / "p.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

            # A voice nobody has: the server's 404 message, in the page.
            page.select_option("#voice", "__other__")
            page.fill("#voice-custom", "no-such-voice")
            page.click("#speak")
            assert wait_state(page, "done", "error") == "error"
            assert page.is_visible("#error")
            assert page.get_attribute("#error", "data-status") == "404"
            assert "no-such-voice" in (page.text_content("#error") or "")
            assert figure(page, "bytes-received") == ""
            assert page_errors == []
        finally:
            browser.close()
