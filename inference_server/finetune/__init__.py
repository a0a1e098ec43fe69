"""`orpheus-finetune`: clips + transcripts -> a LoRA voice in the voices directory."""
