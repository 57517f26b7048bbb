from pathlib import Path

from hub.config.files import load_config
from hub.intake.routing import Router


def router_for(tmp_path: Path, routes: str) -> Router:
    (tmp_path / "base.yaml").write_text(
        "tenants: [{id: eastmoor, name: E}, {id: westvale, name: W}]\n"
        "connectors:\n"
        "  - {name: crm, type: rest}\n  - {name: garden-waste, type: rest}\n  - {name: westvale-crm, type: rest}\n",
        encoding="utf-8",
    )
    (tmp_path / "routes.yaml").write_text(routes, encoding="utf-8")
    return Router(load_config(tmp_path, {}))


ROUTES = """
routes:
  - form: missed-bin-collection
    to:
      - connector: crm
      - connector: garden-waste
        when: "bin_type == 'garden'"
  - form: missed-bin-collection
    tenants: [westvale]
    to: [{connector: westvale-crm}]
"""


def test_a_garden_bin_goes_to_the_crm_and_the_garden_waste_system(tmp_path: Path) -> None:
    router = router_for(tmp_path, ROUTES)
    assert router.connectors_for("eastmoor", "missed-bin-collection", {"bin_type": "garden"}) == ["crm", "garden-waste"]


def test_a_general_bin_goes_only_to_the_crm(tmp_path: Path) -> None:
    router = router_for(tmp_path, ROUTES)
    assert router.connectors_for("eastmoor", "missed-bin-collection", {"bin_type": "general"}) == ["crm"]


def test_a_tenant_route_adds_to_the_shared_routes_and_applies_only_to_that_tenant(tmp_path: Path) -> None:
    router = router_for(tmp_path, ROUTES)
    assert router.connectors_for("westvale", "missed-bin-collection", {"bin_type": "food"}) == ["westvale-crm", "crm"]
    assert "westvale-crm" not in router.connectors_for("eastmoor", "missed-bin-collection", {"bin_type": "food"})


def test_an_unrouted_form_goes_nowhere(tmp_path: Path) -> None:
    router = router_for(tmp_path, ROUTES)
    assert router.connectors_for("eastmoor", "report-fly-tipping", {}) == []
    assert not router.is_routed("report-fly-tipping")


def test_conditions_follow_jmespath_truthiness(tmp_path: Path) -> None:
    router = router_for(
        tmp_path,
        "routes:\n  - {form: f, to: [{connector: crm, when: 'photos'}, {connector: garden-waste, when: 'count'}]}\n",
    )
    assert router.connectors_for("eastmoor", "f", {"photos": [], "count": 0}) == ["garden-waste"]
    assert router.connectors_for("eastmoor", "f", {"photos": [1]}) == ["crm"]
