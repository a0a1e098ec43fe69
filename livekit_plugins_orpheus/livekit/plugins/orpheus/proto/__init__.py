"""Generated gRPC stubs for orpheus.v1 (see proto/generate.py)."""
