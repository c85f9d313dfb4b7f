"""torch's registry of process-group backends, as a fresh process of the test would have it.

``dist.Backend.register_backend`` fills five class-level containers and sets
``Backend.<NAME>``. Under torch's runner a name a test registers dies with its
process; a rank that lives on would carry it into the next test
(``test_c10d_common``'s ``test_is_backend_available`` asserts ``"dummy"`` is not
registered, after ``test_abort`` registered it). ``Registry`` takes the state
before a test and ``restore`` drops what the test added.

Not every addition is the test's own: a module that registers a backend when
it is imported (torch's ``fake_pg``: ``"fake"``) registers it in every process
that imports it, but a module is imported once per rank. Dropping such a name
would leave the next test that imports the module without it. ``watch`` wraps
``register_backend`` once to note the names registered from a module's top
level; those stay.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Registry", "watch"]

#: the containers ``register_backend`` fills, and whether their keys are upper case
_CONTAINERS = {"backend_type_map": False, "backend_capability": False, "_plugins": True}
_at_import: set[str] = set()  # lower-case names registered from a module's top level


def _backend() -> Any:
    import torch.distributed as dist

    return dist.Backend


def watch() -> None:
    """Note the backends registered while a module is imported (idempotent)."""
    backend = _backend()
    original = backend.register_backend
    if getattr(original, "_mpidist_watch", False):
        return

    @functools.wraps(original)
    def register_backend(name: str, *args: Any, **kwargs: Any) -> Any:
        if sys._getframe(1).f_code.co_name == "<module>":
            _at_import.add(str(name).lower())
        return original(name, *args, **kwargs)

    register_backend._mpidist_watch = True  # type: ignore[attr-defined]
    backend.register_backend = staticmethod(register_backend)


@dataclass
class Registry:
    """The registry before a test; ``restore`` removes the names the test added
    (not those a module registered on import) and puts changed entries back."""

    names: list[str] = field(default_factory=lambda: list(_backend().backend_list))
    devices: dict[str, str] = field(
        default_factory=lambda: dict(_backend().default_device_backend_map))
    containers: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        name: dict(getattr(_backend(), name)) for name in _CONTAINERS})
    attributes: set[str] = field(default_factory=lambda: set(vars(_backend())))

    def restore(self) -> None:
        backend = _backend()
        added = {n for n in backend.backend_list if n not in self.names} - _at_import
        if added:
            backend.backend_list[:] = [n for n in backend.backend_list if n not in added]
        for name, upper in _CONTAINERS.items():
            current, saved = getattr(backend, name), self.containers[name]
            for key in [k for k in current if k not in saved]:
                if (key.lower() if upper else key) in added:
                    del current[key]
            for key, value in saved.items():
                if current.get(key) is not value:
                    current[key] = value
        devices = backend.default_device_backend_map
        for device in [d for d in devices if devices[d] in added]:
            if device in self.devices:
                devices[device] = self.devices[device]
            else:
                del devices[device]
        for attribute in set(vars(backend)) - self.attributes:
            if attribute.lower() in added:
                delattr(backend, attribute)
