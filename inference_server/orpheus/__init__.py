"""Pure Orpheus model facts: special token ids, prompt layout, audio token <-> SNAC codes."""
