"""Registering plug-ins by name: one rule for activations and losses alike."""
from __future__ import annotations


def register(registry: dict, builtins, item, kind: str, validate, override: bool = False):
    """Add ``item`` (with a ``name``) to ``registry`` after ``validate(item)``; returns it.

    The same object twice is a no-op; a built-in's name is never taken (their numbers are the suite's
    reference); another plug-in's name only with ``override``.
    """
    if registry.get(item.name) is item:
        return item
    if item.name in builtins:
        raise ValueError(f"{kind} {item.name!r} clashes with the built-in of that name; choose another name")
    if item.name in registry and not override:
        raise ValueError(f"{kind} {item.name!r} is already registered (by another plug-in); choose another name "
                         f"or register it with override=True")
    validate(item)
    registry[item.name] = item
    return item


def unregister(registry: dict, builtins, name: str, kind: str) -> None:
    """Remove a registered plug-in (built-ins stay)."""
    if name in builtins:
        raise ValueError(f"{kind} {name!r} is a built-in and cannot be unregistered")
    registry.pop(name, None)
