"""SIGTERM on a Redis fleet that has forwarded sessions: every node drains and exits.

Both nodes drain at once, so each one's draining announcement pokes the other's
heartbeat as its membership is being stopped: the race that left nodes running until
Kubernetes' SIGKILL.
"""

from __future__ import annotations

import signal
from pathlib import Path

from support_fleet import Fleet, collect, start_request, text_requests

EXIT_BOUND_S = 20.0  # far above a clean exit (~4 s here), far below a hang (forever)


async def test_nodes_that_forwarded_sessions_exit_on_sigterm(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path, size=2).start()
    try:
        owner, entry = fleet.nodes
        for i in range(3):
            fleet.pin(f"fw-{i}", owner)
            reply = await collect(entry.address, [start_request(f"fw-{i}"), *text_requests("Hi.")])
            assert reply[0].started.node_id == "n0"  # forwarded by n1 to its owner
        for node in fleet.nodes:
            node.signal(signal.SIGTERM)
        for node in fleet.nodes:
            assert node.proc is not None and node.proc.wait(EXIT_BOUND_S) == 0
        assert fleet.registered() == set()  # both deregistered, none left to expire
    finally:
        fleet.stop()
