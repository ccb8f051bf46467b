"""Discovery: functions in wired modules and packages, methods of objects providers make."""

from __future__ import annotations

from dependency_injector import containers, providers

from listeners.discovery import discover
from starter import ListenersContainer
from tests.unit.discovery_app.objects import Counted, Held


class Container(ListenersContainer):
    wiring_config = containers.WiringConfiguration(packages=["tests.unit.discovery_app"])
    counted = providers.Factory(Counted)
    held = providers.Object(Held())
    alias = providers.Delegate(counted)
    needed = providers.Dependency(instance_of=Counted)


def test_discovery_walks_wired_packages_and_provider_classes_without_instantiating() -> None:
    before = Counted.instances
    declarations = discover(Container())
    found = {d.spec.effective_id: d for d in declarations}
    assert sorted(found) == ["counted", "deep", "held", "top"], "re-exports and delegates are not found twice"
    assert Counted.instances == before, "discovery must not create listener objects"
    assert found["deep"].describe_owner() == "module tests.unit.discovery_app.sub.deep"
    assert (
        found["counted"].describe_owner() == "provider 'counted' (tests.unit.discovery_app.objects.Counted)"
    )
    assert found["held"].is_method
    assert not found["top"].is_method


async def test_binding_makes_the_object_once_per_listener_and_returns_its_bound_method() -> None:
    container = Container()
    declarations = {d.spec.effective_id: d for d in discover(container)}
    before = Counted.instances
    handler = await declarations["counted"].bind()
    assert Counted.instances == before + 1
    assert isinstance(handler.__self__, Counted)
    top = await declarations["top"].bind()
    assert top.__name__ == "top"
