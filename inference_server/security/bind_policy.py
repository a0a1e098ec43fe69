"""No API keys means loopback only: an open TTS node on a public address is refused."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_refusal(host: str, keys_configured: bool, allow_unauthenticated: bool) -> str | None:
    """Why a node must not start on `host`, or None: no keys means loopback only."""
    if keys_configured or allow_unauthenticated or is_loopback(host):
        return None
    return (
        f"--host (ORPHEUS_HOST) {host} is not loopback and no API keys are configured "
        "(--api-keys-file or ORPHEUS_ACCEPTED_API_KEYS); refusing to serve an open TTS node. "
        "Configure keys, bind 127.0.0.1, or pass --allow-unauthenticated "
        "(ORPHEUS_ALLOW_UNAUTHENTICATED=true)."
    )
