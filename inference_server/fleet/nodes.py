"""What one node of the fleet advertises about itself."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["inference", "router"]
ROLES: tuple[str, ...] = ("inference", "router")


@dataclass(frozen=True)
class NodeInfo:
    """A node's advertised identity, capacity and state (immutable; use `replace`)."""

    node_id: str
    address: str  # "host:port" other nodes dial
    models: tuple[str, ...] = ()  # empty = serves any model (the node's default)
    capacity: int = 0  # max live sessions; 0 = unbounded
    live_sessions: int = 0
    draining: bool = False
    voices: tuple[str, ...] = ()  # voices (LoRA adapters) resident in memory
    role: Role = "inference"
    language: str = ""  # of its model ("" = not advertised: static peers, older nodes)
    base_voices: tuple[str, ...] = ()  # its model's own voices (voices/model_card.py)

    def __post_init__(self) -> None:
        if not self.node_id:
            raise ValueError("NodeInfo.node_id must not be empty")
        _check_address(self.address)
        if self.role not in ROLES:
            raise ValueError(f"NodeInfo.role must be one of {ROLES}, got {self.role!r}")
        if self.capacity < 0 or self.live_sessions < 0:
            raise ValueError(
                f"NodeInfo {self.node_id}: capacity and live_sessions must be >= 0, "
                f"got {self.capacity} and {self.live_sessions}"
            )

    def serves(self, model: str) -> bool:
        """True if this node generates audio for `model` ("" = the default model)."""
        if self.role != "inference":
            return False
        return not model or not self.models or model in self.models

    @property
    def full(self) -> bool:
        return self.capacity > 0 and self.live_sessions >= self.capacity

    def replace(self, **changes: Any) -> NodeInfo:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, data: str | bytes) -> NodeInfo:
        try:
            raw = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ValueError(f"NodeInfo JSON is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"NodeInfo JSON must be an object, got {type(raw).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in raw.items() if k in known}  # newer nodes may add fields
        for name in ("models", "voices", "base_voices"):
            if name in fields:
                fields[name] = tuple(fields[name])
        try:
            return cls(**fields)
        except TypeError as exc:
            raise ValueError(f"NodeInfo JSON is missing a field: {exc}") from exc


def _check_address(address: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"node address must be 'host:port', got {address!r}")
