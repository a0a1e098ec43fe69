"""SIGKILL of the node speaking an utterance: the listener hears every word once.

Real node subprocesses, real SIGKILL, the plugin's own SynthesisSession. The kill is
injected at a chosen response: mid first chunk, mid third chunk (after multibyte text, so
byte and character offsets differ), and right after a TextProgress mark. The new node
continues after the frames the listener heard, so the seam is judged from what the
listener got, never against another run (sampling is not reproducible across nodes):
no post-seam audio repeats pre-seam audio, the new node's first frame is the one after
the frames heard, every frame comes with its samples, and every mark comes once.
bench/bench_failover.py measures the same over many kills (bench/results/failover.json).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.bench_failover import NODE_ARGS, KillWhen, after_marks, at_text_chunk, speak
from bench.seam import BLOCK, REPEAT_SCORE, repeated_samples
from inference_server.local_server import ServerProcess

# Four chunks at --max-chunk-chars 60; the second one has 2-byte characters.
TEXT = (
    "The first sentence starts the story here. Über den Fluß fährt ein Boot. "
    "Then a third sentence keeps it going for a while. And the last one closes it."
)
MAX_TOKENS = 70  # 10 frames (0.85 s of audio) per chunk
KILLS: list[tuple[str, KillWhen]] = [
    ("mid-first-chunk", at_text_chunk(0)),
    ("mid-third-chunk", at_text_chunk(2)),
    ("at-a-progress-mark", after_marks(1)),  # audio still in flight may arrive after it
]


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    """One node per kill, plus the last one's backup."""
    workdir = Path(tmp_path_factory.mktemp("failover-seam"))
    started = [ServerProcess(workdir / f"n{i}.log", NODE_ARGS) for i in range(len(KILLS) + 1)]
    for node in started:
        node.start(wait=False)
    for node in started:
        node.wait_ready()
    yield started
    for node in started:
        node.stop()


def test_the_repeat_search_finds_a_repeat_and_nothing_else() -> None:
    """The overlap measure's own check: a replayed tail is found, fresh noise is not."""
    rng = np.random.default_rng(7)
    before, fresh = rng.normal(0, 3000, 48000), rng.normal(0, 3000, 24000)
    assert repeated_samples(before, fresh)[0] == 0
    replayed, score = repeated_samples(before, np.concatenate([before[-3 * BLOCK :], fresh]))
    assert replayed == 3 * BLOCK and score > REPEAT_SCORE


async def test_listener_hears_every_word_once_across_sigkills(nodes: list[ServerProcess]) -> None:
    for i, (label, kill_when) in enumerate(KILLS):
        victim, backup = nodes[i], nodes[i + 1]
        heard = await speak(
            [victim.address, backup.address], f"kill-{i}", text=TEXT, max_tokens=MAX_TOKENS,
            kill_when=kill_when, victim=victim,
        )  # fmt: skip
        seam = heard.seam()
        print(f"\n{label}: resume {heard.resume}, seam {seam.as_dict()}, gap {heard.gap_ms:.0f} ms")
        assert not victim.alive() and heard.nodes == [victim.address, backup.address]
        assert not heard.text_lost  # every mark once, in order, to the end of the text
        assert seam.repeated_samples == 0  # no audio heard twice
        assert seam.peak_score < REPEAT_SCORE
        assert seam.frame_offset == 0  # the new node's first frame follows the frames heard
        assert seam.short_samples == 0  # and every frame after the seam came with its audio
        assert seam.ledger_exact  # the plugin resumed with exactly the frames it had
        after = [a for a in heard.audio if a.node == 1]
        assert all(b.first_frame == a.first_frame + a.frames for a, b in _same_chunk(after))
        if label.startswith("mid"):  # resumed inside the chunk, after the frames heard
            assert heard.resume["chunk_end"] > heard.resume.get("chars_done", 0)
            assert seam.heard_frames > 0
        if label == "mid-third-chunk":
            done = TEXT.encode()[: heard.resume["chars_done"]]
            assert len(done) != len(done.decode())  # a byte offset, not a character count


def _same_chunk(audio: list) -> list:
    """Consecutive audio messages of the same text chunk."""
    return [(a, b) for a, b in itertools.pairwise(audio) if a.chunk_end == b.chunk_end]
