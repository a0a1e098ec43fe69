"""The tag filter: the model's eight tags stay, unknown and malformed tags go, prose stays."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from livekit.plugins import orpheus

from inference_server.orpheus.tags import ORPHEUS_TAGS, filter_tags, tags_for_model


@pytest.mark.parametrize(
    ("text", "spoken", "removed"),
    [
        ("Hi <laugh> there.", "Hi <laugh> there.", 0),
        ("Oh.<sigh>", "Oh.<sigh>", 0),
        ("Hi <Laugh> there.", "Hi <laugh> there.", 0),  # case-insensitive, canonical spelling
        ("Hi <whisper> there.", "Hi there.", 1),  # unknown
        ("Ha <laughs> ha.", "Ha ha.", 1),  # near miss
        ("So <laugh and then.", "So and then.", 1),  # unclosed
        ("End <laugh", "End", 1),
        ("Oh <<sigh>> well.", "Oh well.", 1),  # doubled brackets
        ("Oh <sigh>> well.", "Oh well.", 1),
        ("</laugh> <laugh/> <laugh > ok", "ok", 3),  # closing, self-closing, space inside
        ('Wait <break time="1s"/> now.', "Wait now.", 1),  # SSML
        ("<b>bold</b> move", "bold move", 2),
        ("x <웃음> y", "x y", 1),  # tag-like in any script
        ("<custom_token_5> hi", "hi", 1),  # never an audio id, never spoken either
        ("<whisper>", "", 1),
    ],
)
def test_unknown_and_malformed_tags_are_removed(text: str, spoken: str, removed: int) -> None:
    assert filter_tags(text) == (spoken, removed)


@pytest.mark.parametrize(
    "prose",
    ["3 < 5 and 7 > 2.", "x <= y", "I <3 you", "a <- b", "a << b", "<|eot_id|>", "< laugh >"],
)
def test_prose_with_angle_brackets_is_kept(prose: str) -> None:
    assert filter_tags(prose) == (prose, 0)


WORD = st.text(st.characters(codec="utf-8", exclude_characters="<>"), min_size=1, max_size=8)
PIECE = st.one_of(
    WORD,
    st.sampled_from([f"<{t}>" for t in ORPHEUS_TAGS]),
    st.sampled_from(["<whisper>", "<laughs>", "<laugh", "<<sigh>>", "</gasp>", " < ", "<3"]),
)


@settings(max_examples=50, deadline=None)
@given(st.lists(PIECE, max_size=8).map(" ".join))
def test_filtered_text_holds_only_known_tags(text: str) -> None:
    spoken, removed = filter_tags(text)
    assert filter_tags(spoken) == (spoken, 0)  # idempotent: nothing tag-like is left
    known = sum(spoken.count(f"<{t}>") for t in ORPHEUS_TAGS)
    assert spoken.count("<") - known == text.count(" < ") + text.count("<3")
    assert removed == 0 or spoken != text


def test_one_tag_set_from_server_to_plugin() -> None:
    assert tags_for_model("tiny-random") == frozenset(ORPHEUS_TAGS)
    assert tuple(f"<{t}>" for t in ORPHEUS_TAGS) == orpheus.EMOTION_TAGS
    assert orpheus.TTS(voice="유나").emotion_tags == orpheus.EMOTION_TAGS
