"""`python agent/main.py` as its users run it, each mode a real subprocess: a typed
conversation against a real tiny-random node and a local OpenAI-compatible LLM server
(tests/agent/llm_stub.py, a process speaking the chat-completions HTTP API), the one-line
errors of a missing LLM or audio device, and the worker through livekit-agents' own entry."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from support_server import free_port

from agent.config import RENAMED

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "agent" / "main.py"
STUB = Path(__file__).resolve().parent / "llm_stub.py"
# short texts: tiny-random's audio (noise) lasts as long as its text, and CPU makes it slowly
REPLIES = ["Tomatoes! <chuckle> Lovely.", "Water them early."]
TYPED = ["I spent the afternoon in my garden", "Mostly tomatoes"]
PERSONA = (
    "name: Maya\nvoice: tara\n"
    'greeting: "Hi! <chuckle>"\n'
    "instructions: You are Maya, a warm companion.\n"
)
# every variable that could point the agent at a model: a developer's shell must not leak in
MODEL_VARIABLES = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "AGENT_LLM_BASE_URL",
    "AGENT_LLM_API_KEY",
    "AGENT_STT_BASE_URL",
    "AGENT_STT_API_KEY",
)


def agent_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AGENT_", "OPENAI_", "LIVEKIT_")) and k not in RENAMED
    }
    personas = tmp_path / "personas"
    personas.mkdir(exist_ok=True)
    (personas / "companion.yaml").write_text(PERSONA)
    # set empty rather than unset: agent/.env (read at start) never overrides a set variable
    env |= {name: "" for name in MODEL_VARIABLES}
    env |= {"AGENT_PERSONAS_DIR": str(personas), "AGENT_WAV_DIR": str(tmp_path / "turns")}
    return env | extra


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The stub LLM server process: (base URL, its JSON-lines log of requests)."""
    workdir = tmp_path_factory.mktemp("llm")
    (workdir / "replies.json").write_text(json.dumps(REPLIES))
    port, requests = free_port(), workdir / "requests.jsonl"
    cmd = [sys.executable, str(STUB), "--port", str(port), "--replies", "replies.json"]
    proc = subprocess.Popen([*cmd, "--requests", str(requests)], cwd=workdir)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_answering(f"{base_url}/models", proc, timeout=30.0)
        yield base_url, requests
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)


def wait_answering(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the LLM stub exited with {proc.returncode}"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1.0) as reply:
            if reply.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} not answering after {timeout}s")


def run_agent(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(MAIN), *args],
        input=stdin,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2), path
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def interrupt_after(proc: subprocess.Popen, marker: str, *, timeout: float) -> str:
    """Read `proc`'s output until `marker`, send SIGINT, and return everything it wrote once
    it exited with status 0. A process that never gets there is killed at `timeout`."""
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if marker in line:
                proc.send_signal(signal.SIGINT)
                break
        seen += proc.stdout.readlines()
        status = proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    log = "".join(seen)
    assert marker in log, f"never saw {marker!r} (killed after {timeout} s?):\n{log[-3000:]}"
    assert status == 0, log[-3000:]
    return log


def latency_lines(text: str) -> list[dict]:
    prefix = "orpheus-agent.latency: "
    return [
        json.loads(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)
    ]


def test_help_lists_every_mode(tmp_path: Path) -> None:
    done = run_agent(["--help"], agent_env(tmp_path))
    assert done.returncode == 0, done.stderr
    for mode in ("start", "dev", "console", "text"):
        assert f"\n    {mode} " in done.stdout, done.stdout


def test_text_mode_records_a_conversation_with_a_local_llm_server(
    inference_server, llm_server: tuple[str, Path], tmp_path: Path
) -> None:
    base_url, requests = llm_server
    env = agent_env(
        tmp_path, AGENT_LLM_BASE_URL=base_url, ORPHEUS_BASE_URL=inference_server.address
    )
    done = run_agent(["text"], env, stdin="".join(f"{line}\n" for line in TYPED))
    assert done.returncode == 0, done.stderr[-3000:]

    # the LLM server was really asked, over HTTP, with the persona and each typed line
    bodies = [json.loads(line) for line in requests.read_text().splitlines()]
    assert [b["messages"][-1]["content"] for b in bodies] == TYPED
    assert all(b["stream"] for b in bodies)
    assert "You are Maya" in json.dumps(bodies[0]["messages"][0])
    assert [f"Maya: {reply}" in done.stdout for reply in REPLIES] == [True, True], done.stdout

    # one latency line per agent turn (greeting + two replies) and the summary, on stderr
    # and in the recording's latency.jsonl
    lines = latency_lines(done.stderr)
    turns = [line for line in lines if line["event"] == "agent_turn_latency"]
    assert [t["trigger"] for t in turns] == ["say", "reply", "reply"], lines
    for turn in turns:
        assert 0 < turn["first_audio_ms"] < 60_000 and turn["interrupted"] is False, turn
    for turn in turns[1:]:
        milestones = [
            turn[k]
            for k in (
                "llm_first_token_ms",
                "tts_text_sent_ms",
                "tts_first_audio_ms",
                "first_audio_ms",
            )
        ]
        assert milestones == sorted(milestones) and milestones[0] > 0, turn
    assert lines[-1]["event"] == "agent_latency_summary" and lines[-1]["turns"] == 3
    (recording,) = (tmp_path / "turns").iterdir()
    logged = [json.loads(line) for line in (recording / "latency.jsonl").read_text().splitlines()]
    assert logged == lines

    # a WAV per agent turn, the greeting first, and the conversation holding each in order
    names = sorted(p.name for p in recording.glob("*.wav"))
    assert names == ["conversation.wav", "turn-001.wav", "turn-002.wav", "turn-003.wav"]
    conversation = read_wav(recording / "conversation.wav")
    cursor = 0
    for n in (1, 2, 3):
        turn = read_wav(recording / f"turn-{n:03d}.wav")
        assert len(turn) > 24000 // 4 and np.abs(turn).max() > 0, f"turn {n} is empty"
        cursor = find(conversation, turn, start=cursor, within=24000 // 2) + len(turn)
    assert len(conversation) == cursor
    print(
        f"\n{recording.name}: "
        + ", ".join(f"{t['trigger']} {t['first_audio_ms']} ms" for t in turns)
    )


def find(haystack: np.ndarray, needle: np.ndarray, *, start: int, within: int) -> int:
    """Where `needle` sits in `haystack`, at most `within` samples after `start`."""
    key = int(np.flatnonzero(needle)[0])  # line up on a sample that silence cannot match
    window = haystack[start + key : start + key + within + 1]
    for at in start + np.flatnonzero(window == needle[key]):
        if np.array_equal(haystack[at : at + len(needle)], needle):
            return int(at)
    raise AssertionError(f"not found within {within} samples after {start}")


@pytest.mark.parametrize("mode", [["text"], ["console", "--text"]])
def test_without_an_llm_text_mode_says_what_to_set_in_one_line(
    tmp_path: Path, mode: list[str]
) -> None:
    # `console --text` is text mode: no PortAudio, no STT asked for
    done = run_agent(mode, agent_env(tmp_path), stdin="hello\n")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("agent: no LLM configured")
    assert "AGENT_LLM_BASE_URL" in done.stderr and "OPENAI_API_KEY" in done.stderr
    assert not (tmp_path / "turns").exists()  # nothing started


@pytest.mark.parametrize("down", ["llm", "node"])
def test_a_server_that_is_not_there_is_named_in_one_line(
    inference_server, llm_server: tuple[str, Path], tmp_path: Path, down: str
) -> None:
    closed = free_port()
    llm_url = f"http://127.0.0.1:{closed}/v1" if down == "llm" else llm_server[0]
    node = f"127.0.0.1:{closed}" if down == "node" else inference_server.address
    env = agent_env(tmp_path, AGENT_LLM_BASE_URL=llm_url, ORPHEUS_BASE_URL=node)
    done = run_agent(["text"], env, stdin="hello\n")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    expected = {
        "llm": f"agent: no LLM server answers at {llm_url} (AGENT_LLM_BASE_URL): ",
        "node": f"agent: no Orpheus node answers at ORPHEUS_BASE_URL ({node}: ",
    }
    assert done.stderr.startswith(expected[down]), done.stderr
    assert not (tmp_path / "turns").exists()  # checked before anything started


def test_console_without_an_audio_device_says_so_in_one_line(
    inference_server, llm_server: tuple[str, Path], tmp_path: Path
) -> None:
    try:
        import sounddevice
    except OSError:  # no PortAudio: the agent says which package to install
        expected = "agent: console audio needs the PortAudio library"
    else:
        devices = sounddevice.query_devices()
        if any(d["max_input_channels"] for d in devices) and any(
            d["max_output_channels"] for d in devices
        ):
            pytest.skip("this machine has a microphone and a speaker")
        expected = "agent: console needs a microphone and a speaker"
    base_url, _ = llm_server
    env = agent_env(tmp_path, AGENT_LLM_BASE_URL=base_url, AGENT_STT_BASE_URL=base_url)
    env["ORPHEUS_BASE_URL"] = inference_server.address
    done = run_agent(["console"], env)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(expected), done.stderr
    assert not (tmp_path / "turns").exists()


def test_dev_worker_runs_through_the_livekit_entry_without_deprecations(
    llm_server: tuple[str, Path], tmp_path: Path
) -> None:
    base_url, _ = llm_server
    closed = f"ws://127.0.0.1:{free_port()}"  # no LiveKit server: the worker keeps retrying
    env = agent_env(tmp_path, AGENT_LLM_BASE_URL=base_url, AGENT_STT_BASE_URL=base_url)
    env |= {"LIVEKIT_URL": closed, "LIVEKIT_API_KEY": "devkey", "LIVEKIT_API_SECRET": "secret"}
    env["PYTHONWARNINGS"] = "default"  # show every DeprecationWarning, not only __main__'s
    proc = subprocess.Popen(
        [sys.executable, str(MAIN), "dev", "--log-level", "INFO"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # until the worker has really tried the LiveKit server; then Ctrl-C
    log = interrupt_after(proc, "failed to connect to livekit", timeout=120)
    assert "starting worker" in log and "failed to connect to livekit" in log, log
    assert "deprecated" not in log.lower(), log


@pytest.fixture
def dummy_sound_card(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A JACK server on the dummy backend: a timed microphone (silence) and speaker that
    PortAudio sees as this machine's default devices. Environment for its clients."""
    if shutil.which("jackd") is None or shutil.which("jack_wait") is None:
        pytest.skip("no jackd (Debian jackd2): console mode needs a sound card, even a dummy one")
    name = f"agent-test-{free_port()}"
    log = (tmp_path / "jackd.log").open("w")
    cmd = ["jackd", "-n", name, "--no-realtime", "-d", "dummy", "-r", "24000", "-p", "1024"]
    jackd = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    env = {"JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1"}
    try:
        wait = ["jack_wait", "-s", name, "-w", "-t", "30"]
        subprocess.run(wait, check=True, capture_output=True, timeout=60)
        yield env
    finally:
        jackd.terminate()
        jackd.wait(timeout=10)
        log.close()


def test_console_mode_greets_through_the_speaker_and_records_the_microphone(
    inference_server, llm_server: tuple[str, Path], dummy_sound_card: dict[str, str], tmp_path: Path
) -> None:
    base_url, _ = llm_server
    env = agent_env(tmp_path, AGENT_LLM_BASE_URL=base_url, AGENT_STT_BASE_URL=base_url)
    env |= dummy_sound_card | {"ORPHEUS_BASE_URL": inference_server.address}
    proc = subprocess.Popen(
        [sys.executable, str(MAIN), "console"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # until the greeting has played through the speaker; Ctrl-C ends the conversation
    log = interrupt_after(proc, '"trigger":"say"', timeout=180)
    (recording,) = (tmp_path / "turns").iterdir()
    assert sorted(p.name for p in recording.glob("*.wav")) == ["conversation.wav", "turn-001.wav"]
    greeting = read_wav(recording / "turn-001.wav")
    assert len(greeting) > 24000 // 4 and np.abs(greeting).max() > 0, log
    # the conversation is the microphone's whole timeline with the greeting mixed in: the
    # dummy card's microphone is silent, so the greeting's samples are there unchanged
    conversation = read_wav(recording / "conversation.wav")
    assert len(conversation) > len(greeting)
    find(conversation, greeting, start=0, within=len(conversation) - len(greeting))
    assert latency_lines(log)[-1]["turns"] == 1
