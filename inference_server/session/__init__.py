"""A synthesis session: text in (segments of sentences), PCM out, one engine request at a time."""
