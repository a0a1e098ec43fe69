"""Voice names, checked before a session is opened: the server's rule, copied.

The plugin cannot import the server, so this is a copy of inference_server/voices/names.py
(the repository's tests hold the two to the same answers): NFC-normalised, 1-64 bytes of
UTF-8, lowercase Unicode letters, combining marks and digits plus '_' and '-', starting with
a letter or digit; never a path.
"""

from __future__ import annotations

import unicodedata

MAX_VOICE_NAME_BYTES = 64
VOICE_NAME_RULE = (
    f"1-{MAX_VOICE_NAME_BYTES} bytes of UTF-8 (NFC): lowercase Unicode letters, marks and "
    "digits, '_' or '-', starting with a letter or digit"
)


def voice_name_problem(name: str) -> str | None:
    """Why the (already NFC) `name` is not a voice name, or None if it is one."""
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
    """The NFC form of `name` if it is a valid voice name, else ValueError naming the voice
    and the rule."""
    normal = unicodedata.normalize("NFC", name)
    problem = voice_name_problem(normal)
    if problem is not None:
        shown = normal if len(normal) <= 80 else normal[:77] + "..."
        raise ValueError(
            f"invalid voice name {shown!r}: {problem}; a voice name is {VOICE_NAME_RULE}"
        )
    return normal
