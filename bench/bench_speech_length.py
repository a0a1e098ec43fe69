"""The speech-length estimator (orpheus/speech_length.py) against real speech durations.

Speech comes from espeak-ng at its default speed (a system package of `make test`): it
is real synthesized speech in every language Orpheus ships, with no weights to load.
For each language the even-numbered texts of bench/speech_length_texts.py fit a rate
(spoken characters per second, after the estimator's pauses); the odd-numbered texts are
held out, and the estimator as shipped (its CHARS_PER_SECOND table) is scored on them.
Writes bench/results/speech_length.json.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import wave
from pathlib import Path

from inference_server.orpheus import speech_length as SL

from .results_io import write_json
from .speech_length_texts import TEXTS

ESPEAK_VOICE = {"en": "en-us", "zh": "cmn", "fr": "fr-fr"}


def espeak_seconds(text: str, language: str, workdir: Path) -> float:
    """Duration of espeak-ng's speech for `text`, leading and trailing silence included."""
    out = workdir / "speech.wav"
    voice = ESPEAK_VOICE.get(language, language)
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(out), text], check=True)
    with wave.open(str(out)) as w:
        return w.getnframes() / w.getframerate()


def _without_rate(text: str, language: str) -> tuple[float, float]:
    """(spoken characters, the estimate's seconds that do not depend on the rate)."""
    rate = SL.CHARS_PER_SECOND[language]
    total = SL.spoken_seconds(text, language)
    chars = sum(c.isalnum() for c in text)
    return chars, total - chars / rate


def measure_language(language: str, texts: list[str], workdir: Path) -> dict:
    durations = [espeak_seconds(t, language, workdir) for t in texts]
    fit = [(t, d) for i, (t, d) in enumerate(zip(texts, durations, strict=True)) if i % 2 == 0]
    held = [(t, d) for i, (t, d) in enumerate(zip(texts, durations, strict=True)) if i % 2 == 1]
    chars = sum(_without_rate(t, language)[0] for t, _ in fit)
    speaking = sum(d - _without_rate(t, language)[1] for t, d in fit)
    errors = [SL.spoken_seconds(t, language) / d - 1.0 for t, d in held]
    return {
        "fitted_chars_per_second": round(chars / speaking, 2),
        "shipped_chars_per_second": SL.CHARS_PER_SECOND[language],
        "held_out": [
            {
                "text": t,
                "speech_s": round(d, 3),
                "estimate_s": round(SL.spoken_seconds(t, language), 3),
            }
            for t, d in held
        ],
        "held_out_error_median_abs": round(statistics.median(abs(e) for e in errors), 3),
        "held_out_error_max_abs": round(max(abs(e) for e in errors), 3),
    }


def main() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        per_language = {
            lang: measure_language(lang, texts, Path(tmp)) for lang, texts in TEXTS.items()
        }
    errors = [abs(x) for m in per_language.values() for x in [m["held_out_error_max_abs"]]]
    result = {
        "speech": "espeak-ng default speed (not Orpheus: see orpheus/speech_length.py)",
        "languages": per_language,
        "worst_language_max_abs_error": max(errors),
    }
    write_json("speech_length", result)
    for lang, m in per_language.items():
        print(
            f"{lang}: fitted {m['fitted_chars_per_second']} chars/s "
            f"(shipped {m['shipped_chars_per_second']}); held-out error median "
            f"{m['held_out_error_median_abs']:.0%}, max {m['held_out_error_max_abs']:.0%}"
        )
    return result


if __name__ == "__main__":
    main()
