"""SNAC codec: model loading, streaming decode windows, batched decoding."""
