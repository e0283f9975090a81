"""Find the phantom generator module of an AI service, and which services have one.

Why a registry instead of a table: each service's generator is its own module
(``services.synth.phantoms.<id with - as _>``), written independently; the simulator must work
with whichever exist, so availability is decided by importing, not by a list kept by hand.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from streams.contract.catalog import catalog

PACKAGE = "services.synth.phantoms"


class PhantomModuleMissing(LookupError):
    """A catalog service has no phantom generator module (yet)."""


def module_name(service_id: str) -> str:
    """``chest-ct`` -> ``services.synth.phantoms.chest_ct``."""
    return f"{PACKAGE}.{service_id.replace('-', '_')}"


def phantom_module(service_id: str) -> ModuleType:
    """The generator module of ``service_id``; raises :class:`PhantomModuleMissing` naming the
    module it looked for (other import errors inside an existing module propagate)."""
    name = module_name(service_id)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise PhantomModuleMissing(
            f"service {service_id!r} has no phantom generator: module {name} "
            f"(services/synth/phantoms/{service_id.replace('-', '_')}.py) does not exist") from exc
    if getattr(module, "SERVICE", None) != service_id:
        raise PhantomModuleMissing(f"{name}.SERVICE is {getattr(module, 'SERVICE', None)!r}, "
                                   f"expected {service_id!r}")
    return module


def available_services() -> tuple[str, ...]:
    """Catalog service ids whose phantom module exists, in catalog order."""
    found = []
    for spec in catalog():
        try:
            phantom_module(spec.id)
        except PhantomModuleMissing:
            continue
        found.append(spec.id)
    return tuple(found)
