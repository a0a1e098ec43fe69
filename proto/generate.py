"""Generate the Python gRPC stubs from tts.proto into the server and the plugin.

Both packages carry their own copy so the plugin never depends on the server.
`python proto/generate.py --check` exits 1 when a checked-in copy is stale.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
PROTO_FILE = "orpheus/v1/tts.proto"
TARGETS = (
    ROOT / "inference_server" / "proto",
    ROOT / "livekit_plugins_orpheus" / "livekit" / "plugins" / "orpheus" / "proto",
)
GENERATED = ("tts_pb2.py", "tts_pb2.pyi", "tts_pb2_grpc.py")
HEADER = "# Generated from proto/orpheus/v1/tts.proto by proto/generate.py. Do not edit.\n"


def render() -> dict[str, str]:
    """Run protoc and return the generated files, imports made package-relative."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as out:
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO_DIR / PROTO_FILE),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        gen = Path(out) / "orpheus" / "v1"
        files = {}
        for name in GENERATED:
            text = (gen / name).read_text()
            text = re.sub(r"^from orpheus\.v1 import", "from . import", text, flags=re.M)
            files[name] = HEADER + text
        return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if stubs are stale")
    args = parser.parse_args()
    files = render()
    stale = []
    for target in TARGETS:
        target.mkdir(parents=True, exist_ok=True)
        init = target / "__init__.py"
        if not init.exists() and not args.check:
            init.write_text('"""Generated gRPC stubs for orpheus.v1 (see proto/generate.py)."""\n')
        for name, text in files.items():
            path = target / name
            current = path.read_text() if path.exists() else None
            if current != text:
                stale.append(path.relative_to(ROOT))
                if not args.check:
                    path.write_text(text)
    if args.check and stale:
        print("stale generated stubs (run `make proto`):", *stale, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
