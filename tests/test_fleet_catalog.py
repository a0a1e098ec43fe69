"""ModelCatalog: the fleet's models from node records, and the model a session runs on."""

from __future__ import annotations

import pytest

from inference_server.errors import NotFound
from inference_server.fleet.catalog import ModelCatalog, ServedModel
from inference_server.fleet.nodes import NodeInfo

EN = ("tara", "leah")
KO = ("유나", "준서")


def node(node_id: str, model: str = "", language: str = "", voices=(), **kw) -> NodeInfo:
    models = (model,) if model else ()
    return NodeInfo(
        node_id, f"127.0.0.1:{5000 + len(node_id)}", models, language=language,
        base_voices=voices, **kw,
    )  # fmt: skip


FLEET = [
    node("n2", "tiny-ko", "ko", KO),
    node("n0", "tiny-random", "en", EN),
    node("n1", "tiny-ko", "ko", KO, draining=True),
    node("r0", role="router"),
]


def test_models_group_nodes_by_model_and_skip_routers() -> None:
    catalog = ModelCatalog.of_nodes(FLEET)
    assert catalog.models() == [
        ServedModel("tiny-ko", "ko", KO, ("n1", "n2")),
        ServedModel("tiny-random", "en", EN, ("n0",)),
    ]
    assert [m.name for m in catalog.models("ko")] == ["tiny-ko"]
    assert catalog.summary() == "served: en (tiny-random), ko (tiny-ko)"


def test_language_picks_the_model_deterministically_when_several_serve_it() -> None:
    catalog = ModelCatalog.of_nodes([*FLEET, node("n3", "a-ko", "ko", KO)])
    assert catalog.resolve("", "ko") == "a-ko"  # the first by name, on every node
    assert catalog.resolve("tiny-ko", "ko") == "tiny-ko"
    assert catalog.resolve("", "") == ""  # neither: the entry node's default


@pytest.mark.parametrize(
    ("model", "language", "message"),
    [
        ("", "fr", "language 'fr' is not served by any node of the fleet; "),
        ("nope", "", "model 'nope' is not served by any node of the fleet; "),
        ("tiny-ko", "en", "model 'tiny-ko' speaks 'ko', not 'en'; "),
    ],
)
def test_what_nobody_serves_is_not_found_naming_what_is(
    model: str, language: str, message: str
) -> None:
    with pytest.raises(NotFound) as caught:
        ModelCatalog.of_nodes(FLEET).resolve(model, language)
    assert str(caught.value) == message + "served: en (tiny-random), ko (tiny-ko)"


def test_static_peers_not_asked_yet_may_serve_any_named_model() -> None:
    catalog = ModelCatalog.of_nodes([node("n0", "tiny-random", "en", EN), node("peer")])
    assert catalog.resolve("other", "") == "other"  # the owner checks it serves it
    with pytest.raises(NotFound, match="1 static peer node\\(s\\) not asked yet"):
        catalog.resolve("", "ko")


def test_old_records_without_language_still_parse_and_route_by_name() -> None:
    old = '{"node_id":"n9","address":"10.0.0.9:50051","models":["tiny-random"],"capacity":4}'
    info = NodeInfo.from_json(old)
    assert (info.language, info.base_voices) == ("", ())
    assert NodeInfo.from_json(node("n2", "tiny-ko", "ko", KO).to_json()).base_voices == KO
    catalog = ModelCatalog.of_nodes([info])
    assert catalog.resolve("tiny-random", "en") == "tiny-random"  # unknown language: no veto
    assert catalog.summary() == "served: ? (tiny-random)"
