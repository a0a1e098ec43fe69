"""The reference persona agent (see agent/README.md); `python agent/main.py --help`."""
