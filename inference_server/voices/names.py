"""Voice names: one rule for the registry, the fine-tuning CLI, the wire and the ring.

A voice name is an identifier in any script (유나, 长乐, ऋतिका, tara) that is also a
LoRA directory name under --voices-dir, a ring key and a prompt prefix, so it is:

- NFC-normalised first: a name arriving decomposed (NFD, as macOS file systems store
  directory names) is the same voice as its composed form;
- 1 to `MAX_VOICE_NAME_BYTES` (64) bytes of UTF-8: the old ASCII limit of 64 characters
  unchanged, 21 Hangul/Han/Devanagari characters, and far inside a file name's 255 bytes
  with room for the fine-tuning CLI's hidden temporary directory beside it;
- Unicode letters (L*), combining marks (M*, after the first character: Devanagari vowel
  signs) and decimal digits (Nd), plus '_' and '-' after the first character. Nothing
  else: no '/', '\\', '.', whitespace, NUL, control or format characters (ZWJ/ZWNJ
  included), so a name is never a path, a hidden file or an option (no leading '-');
- not upper case: a name must equal its own `str.lower()` (scripts without case pass as
  they are). One spelling per voice, the directory's; no case folding ('Tara' is refused,
  not mapped to 'tara': folding would make 'Ana' and 'ana' directories collide, and
  Unicode folding is locale-dependent, e.g. Turkish 'İ').

The plugin (livekit/plugins/orpheus/voices.py) carries a copy of this rule, as it cannot
import the server; tests/test_voice_names.py holds both to the same answers.
"""

from __future__ import annotations

import unicodedata

from ..errors import ClientError

MAX_VOICE_NAME_BYTES = 64
VOICE_NAME_RULE = (
    f"1-{MAX_VOICE_NAME_BYTES} bytes of UTF-8 (NFC): lowercase Unicode letters, marks and "
    "digits, '_' or '-', starting with a letter or digit"
)


class InvalidVoiceNameError(ClientError):
    """A voice name that breaks `VOICE_NAME_RULE`."""


def normalize_voice_name(name: str) -> str:
    """`name` NFC-normalised: the spelling the registry, the ring and the prompt use."""
    return unicodedata.normalize("NFC", name)


def voice_name_problem(name: str) -> str | None:
    """Why the (already normalised) `name` is not a voice name, or None if it is one."""
    if not name:
        return "it is empty"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_VOICE_NAME_BYTES:
        return f"it is {size} bytes of UTF-8"
    for i, ch in enumerate(name):
        cat = unicodedata.category(ch)
        if cat[0] == "L" or cat == "Nd":
            continue
        if i and (ch in "_-" or cat[0] == "M"):
            continue
        where = "first character" if i == 0 else f"character {i + 1}"
        return f"{where} {ch!r} (U+{ord(ch):04X}, {unicodedata.name(ch, cat)}) is not allowed"
    if name != name.lower():
        return "it has upper-case letters"
    return None


def validate_voice_name(name: str) -> str:
    """The NFC form of `name` if it is a valid voice name, else `InvalidVoiceNameError`
    naming the voice and the rule."""
    normal = normalize_voice_name(name)
    problem = voice_name_problem(normal)
    if problem is not None:
        shown = normal if len(normal) <= 80 else normal[:77] + "..."
        raise InvalidVoiceNameError(
            f"invalid voice name {shown!r}: {problem}; a voice name is {VOICE_NAME_RULE}"
        )
    return normal
