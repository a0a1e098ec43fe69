"""Split a long recording at its pauses and give each piece its transcript sentences.

No aligner, no ASR: the only evidence is when the speaker is silent and how much text
each sentence has.

1. Pauses: 10 ms windows quieter than the silence threshold (relative to the loudest
   window), in runs of at least `min_pause_ms`, between the first and last sound.
2. A clock that ignores those pauses ("speech time"): sentences take speech time in
   proportion to their letters, so the boundary after sentence k is expected at
   `total_speech * letters[:k] / letters`. Pausing does not move this clock, so long
   breaths between sentences do not make the estimate drift.
3. A monotone match of sentence boundaries to pauses (dynamic programming, like an edit
   distance): matching costs the distance in speech time plus a little for a short pause
   (sentence ends are usually the longer pauses); a pause may go unused (a breath inside
   a sentence); a boundary may go unmatched at a fixed cost, which merges two sentences
   into one clip.
4. Each resulting clip is checked: its speech time must be within `tolerance`x (plus
   `SLACK_S`, for short sentences) of what its text predicts at the speaker's median rate
   over all clips, and it must be shorter
   than `max_clip_s`; otherwise it is dropped and the reason reported (a dropped clip
   costs training data; a misaligned one would teach the voice wrong words).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..orpheus.tokens import SAMPLE_RATE

WINDOW_S = 0.010
MERGE_COST_S = 1.0  # an unmatched sentence boundary costs as much as 1 s of misplacement
LONG_PAUSE_S = 0.5  # pauses shorter than this pay the difference when matched
SLACK_S = 0.3  # short sentences: a fixed error allowed on top of `tolerance`
_SENTENCE_END = re.compile(r"(?<=[.!?;…。！？])\s+|\s*\n\s*")


@dataclass(frozen=True, slots=True)
class Piece:
    """A clip cut from a recording: [start, end) in seconds and its transcript."""

    start_s: float
    end_s: float
    text: str
    problem: str | None  # why it is dropped, or None if kept


@dataclass(frozen=True, slots=True)
class _Pause:
    start: int  # window index
    end: int  # exclusive
    speech_before: int  # windows of speech before it


def split_sentences(transcript: str) -> list[str]:
    """Sentences at terminal punctuation or line breaks (one sentence a line works best)."""
    return [s.strip() for s in _SENTENCE_END.split(transcript) if s.strip()]


def letters(text: str) -> int:
    """What takes time to say: letters and digits, any script."""
    return max(1, sum(ch.isalnum() for ch in text))


def split_recording(
    samples: np.ndarray,
    transcript: str,
    *,
    threshold_db: float = -40.0,
    min_pause_ms: float = 300.0,
    max_clip_s: float = 20.0,
    tolerance: float = 1.3,
) -> list[Piece]:
    """Cut `samples` (24 kHz mono) into pieces at pauses, one or more sentences each."""
    sentences = split_sentences(transcript)
    loud = _loud_windows(samples, threshold_db)
    if not sentences or not loud.any():
        return []
    first, last = int(np.argmax(loud)), len(loud) - int(np.argmax(loud[::-1]))
    pauses = _pauses(loud, first, last, max(1, round(min_pause_ms / 1000 / WINDOW_S)))
    speech = (last - first) - sum(p.end - p.start for p in pauses)
    weights = np.cumsum([letters(s) for s in sentences])
    expected = speech * weights[:-1] / weights[-1]  # boundary k, in speech windows
    cuts = _match(expected, pauses)
    return _pieces(sentences, weights, cuts, pauses, first, last, max_clip_s, tolerance)


def _loud_windows(samples: np.ndarray, threshold_db: float) -> np.ndarray:
    window = max(1, int(SAMPLE_RATE * WINDOW_S))
    n = len(samples) // window
    if n == 0:
        return np.zeros(0, dtype=bool)
    rms = np.sqrt(np.mean(samples[: n * window].reshape(n, window) ** 2, axis=1) + 1e-20)
    if rms.max() <= 1e-9:
        return np.zeros(n, dtype=bool)
    return 20 * np.log10(rms / rms.max()) > threshold_db


def _pauses(loud: np.ndarray, first: int, last: int, min_windows: int) -> list[_Pause]:
    pauses, silent_so_far, i = [], 0, first
    while i < last:
        if loud[i]:
            i += 1
            continue
        j = i
        while j < last and not loud[j]:
            j += 1
        if j - i >= min_windows:
            pauses.append(_Pause(i, j, (i - first) - silent_so_far))
            silent_so_far += j - i
        i = j
    return pauses


def _match(expected: np.ndarray, pauses: list[_Pause]) -> list[int | None]:
    """For each sentence boundary, the index of the pause it ends at (None: merged)."""
    n, m = len(expected), len(pauses)
    merge = MERGE_COST_S / WINDOW_S
    cost = np.zeros((n + 1, m + 1))
    cost[1:, 0] = merge * np.arange(1, n + 1)
    move = np.zeros((n + 1, m + 1), dtype=np.int8)  # 0 skip pause, 1 merge, 2 match
    for k in range(1, n + 1):
        for j in range(1, m + 1):
            p = pauses[j - 1]
            short = max(0.0, LONG_PAUSE_S / WINDOW_S - (p.end - p.start))
            options = (
                cost[k, j - 1],
                cost[k - 1, j] + merge,
                cost[k - 1, j - 1] + abs(p.speech_before - expected[k - 1]) + short,
            )
            move[k, j] = int(np.argmin(options))
            cost[k, j] = options[move[k, j]]
    cuts: list[int | None] = [None] * n
    k, j = n, m
    while k > 0:
        step = move[k, j] if j > 0 else 1
        if step == 2:
            cuts[k - 1] = j - 1
        k, j = (k, j - 1) if step == 0 else (k - 1, j) if step == 1 else (k - 1, j - 1)
    return cuts


def _pieces(
    sentences: list[str],
    weights: np.ndarray,
    cuts: list[int | None],
    pauses: list[_Pause],
    first: int,
    last: int,
    max_clip_s: float,
    tolerance: float,
) -> list[Piece]:
    """Clips between the matched pauses (cut at each pause's middle), each checked."""
    ends = [k for k, cut in enumerate(cuts) if cut is not None] + [len(sentences) - 1]
    spans, start_sentence, start_w = [], 0, first
    for k in ends:
        pause = pauses[cuts[k]] if k < len(cuts) else None  # type: ignore[index]
        end_w = (pause.start + pause.end) // 2 if pause else last
        inner = sum(
            min(p.end, end_w) - max(p.start, start_w)
            for p in pauses
            if p.start < end_w and p.end > start_w
        )
        said = (end_w - start_w - inner) * WINDOW_S
        text = " ".join(sentences[start_sentence : k + 1])
        spans.append((start_w, end_w, text, said, letters(text)))
        start_sentence, start_w = k + 1, end_w
    # The speaker's typical rate (median over clips): one misfit clip does not shift it.
    rate = float(np.median([said / n for *_, said, n in spans]))
    return [
        Piece(
            start * WINDOW_S,
            end * WINDOW_S,
            text,
            _problem(said, n * rate, (end - start) * WINDOW_S, max_clip_s, tolerance),
        )
        for start, end, text, said, n in spans
    ]


def _problem(
    said: float, predicted: float, length: float, max_clip_s: float, tolerance: float
) -> str | None:
    if length > max_clip_s:
        return (
            f"{length:.1f} s is longer than --max-clip-seconds {max_clip_s:g} "
            "(no pause found between its sentences)"
        )
    if not predicted / tolerance - SLACK_S <= said <= predicted * tolerance + SLACK_S:
        return (
            f"{said:.1f} s of speech where its text predicts {predicted:.1f} s "
            "(split point uncertain)"
        )
    return None
