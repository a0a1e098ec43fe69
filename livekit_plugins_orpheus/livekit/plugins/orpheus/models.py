from typing import Literal

# The stock Orpheus speakers; LoRA voice clones are any other name the server knows.
TTSVoices = Literal["tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"]

# "" lets the node pick its default model; a fleet may serve several.
TTSModels = Literal["orpheus-3b", "tiny-random"]

# Emotion tags Orpheus speaks when they appear in the text.
EMOTION_TAGS = (
    "<laugh>",
    "<chuckle>",
    "<sigh>",
    "<cough>",
    "<sniffle>",
    "<groan>",
    "<yawn>",
    "<gasp>",
)
