"""Voices: the base Orpheus voices and LoRA clones found in the voices directory.

names.py (the one voice-name rule), adapters.py (a LoRA directory's checks) and
registry.py (what a node serves). Import the module you need: this package imports
nothing, so torch-free callers (orpheus-finetune --help) can read the name rule.
"""
