"""Which models the fleet serves, in which language: ListModels, and the model a session
asks for by name or by language.

The one rule for picking a session's model: a named model must be served (and speak the
language, when one is named too); a language alone picks the model serving it, the first
by name when several do; neither leaves the choice to the entry node. Anything not served
is `NotFound` naming what is. A single node applies the same rule to its own model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import NotFound
from .nodes import NodeInfo


@dataclass(frozen=True, slots=True)
class ServedModel:
    name: str
    language: str  # "" = not advertised (an older node)
    base_voices: tuple[str, ...]
    node_ids: tuple[str, ...]


class ModelCatalog:
    """The models of a set of nodes, by name."""

    def __init__(
        self, models: Iterable[ServedModel], *, open_nodes: int = 0, scope: str = "this node"
    ) -> None:
        """`open_nodes`: nodes of unknown model (static peers not asked yet, see
        fleet/peer_cards.py), which may serve any; `scope` names who serves, for messages."""
        self._models = {m.name: m for m in sorted(models, key=lambda m: m.name)}
        self._open_nodes = open_nodes
        self._scope = scope

    @classmethod
    def of_nodes(cls, nodes: Iterable[NodeInfo]) -> ModelCatalog:
        """The models the fleet's inference nodes advertise (draining ones too: their model
        is still served, only not by them right now)."""
        by_name: dict[str, list[NodeInfo]] = {}
        open_nodes = 0
        for node in sorted(nodes, key=lambda n: n.node_id):
            if node.role != "inference":
                continue
            open_nodes += not node.models
            for model in node.models:
                by_name.setdefault(model, []).append(node)
        models = [
            ServedModel(
                name, group[0].language, group[0].base_voices, tuple(n.node_id for n in group)
            )
            for name, group in by_name.items()
        ]
        return cls(models, open_nodes=open_nodes, scope="any node of the fleet")

    def models(self, language: str = "") -> list[ServedModel]:
        """The models, by name; only those speaking `language` when it is given."""
        return [m for m in self._models.values() if not language or m.language == language]

    def resolve(self, model: str, language: str) -> str:
        """The model a session asking for `model` and/or `language` (normalised) runs on;
        "" when it names neither. Raises `NotFound` naming what is served."""
        if model:
            served = self._models.get(model)
            if served is None and not self._open_nodes:
                raise NotFound(f"model {model!r} is not served by {self._scope}; {self.summary()}")
            if served and language and served.language and served.language != language:
                raise NotFound(
                    f"model {model!r} speaks {served.language!r}, not {language!r}; "
                    f"{self.summary()}"
                )
            return model
        if not language:
            return ""
        matches = self.models(language)
        if not matches:
            raise NotFound(
                f"language {language!r} is not served by {self._scope}; {self.summary()}"
            )
        return matches[0].name

    def summary(self) -> str:
        """What is served, for a client's message: "served: en (tiny-random), ko (tiny-ko)"."""
        by_language = sorted(self._models.values(), key=lambda m: (m.language, m.name))
        served = ", ".join(f"{m.language or '?'} ({m.name})" for m in by_language)
        text = f"served: {served or 'nothing'}"
        if self._open_nodes:
            text += f"; {self._open_nodes} static peer node(s) not asked yet"
        return text
