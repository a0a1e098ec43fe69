"""SIGKILL of the node speaking an utterance: the listener hears every word once.

Real node subprocesses, real SIGKILL, the plugin's own SynthesisSession. The kill is
injected at a chosen response: mid first chunk, mid third chunk (after multibyte text, so
byte and character offsets differ), and right after a TextProgress mark. What the
listener heard is compared with the same session spoken start to end on a healthy node
with the same seed: the one the first node drew and reported in SessionStarted.
bench/bench_failover.py measures the same over many kills (bench/results/failover.json).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.bench_failover import NODE_ARGS, KillWhen, after_marks, at_text_chunk, speak
from bench.seam import FRAME_SAMPLES, find_seam
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


async def test_listener_hears_every_word_once_across_sigkills(nodes: list[ServerProcess]) -> None:
    seed, reference = None, None
    for i, (label, kill_when) in enumerate(KILLS):
        victim, backup = nodes[i], nodes[i + 1]
        heard = await speak(
            [victim.address, backup.address], f"kill-{i}", text=TEXT, max_tokens=MAX_TOKENS,
            seed=seed, kill_when=kill_when, victim=victim,
        )  # fmt: skip
        if reference is None:  # the first run's seed was drawn by its node; reuse it
            seed = heard.seed
            reference = await speak(
                [backup.address], "reference", text=TEXT, max_tokens=MAX_TOKENS, seed=seed
            )
        seam = find_seam(bytes(heard.pcm), bytes(reference.pcm), heard.victim_bytes)
        resume = heard.resume
        print(f"\n{label}: resume {resume}, seam {seam.as_dict()}, gap {heard.gap_ms:.0f} ms")
        assert not victim.alive() and heard.nodes == [victim.address, backup.address]
        assert heard.marks == reference.marks  # every mark once: no text lost
        assert heard.marks[-1] == len(TEXT.encode())
        assert abs(seam.offset_samples) <= FRAME_SAMPLES  # the acceptance bound: one frame
        assert seam.offset_samples == 0  # in fact nothing repeated, nothing missing
        assert seam.tail_samples_missing == 0
        # same tokens on both nodes: the audio differs only by SNAC window-edge rounding
        assert seam.before_rel_err < 1e-3 and seam.after_rel_err < 1e-3
        if label.startswith("mid"):  # regenerated the chunk, dropped what the listener had
            assert resume["chunk_end"] > resume.get("chars_done", 0)
            assert resume["audio_samples_done"] > 0
        if label == "mid-third-chunk":
            done = TEXT.encode()[: resume["chars_done"]]
            assert len(done) != len(done.decode())  # a byte offset, not a character count
