from typing import Literal

# The stock Orpheus speakers; LoRA voice clones are any other name the server knows.
TTSVoices = Literal["tara", "leah", "jess", "leo", "dan", "mia", "zac", "zoe"]

# What a node serves as SessionStart.model: its --model-name, else the --model directory's
# name (canopylabs/orpheus-3b-0.1-ft -> "orpheus-3b-0.1-ft"). "" lets the node pick.
TTSModels = Literal["orpheus-3b-0.1-ft", "tiny-random"]

# Emotion tags Orpheus performs when they appear in the text: the server's set for its
# models (inference_server/orpheus/tags.py). Any other <tag>, and malformed ones such as
# <laugh or <<sigh>>, are removed by the server and never spoken.
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
