"""The registry of edit types: each type is one class in one module of this package.

To add an edit type, add a module here with one :class:`~.base.EditType` subclass decorated
with :func:`register` (its planning, applying, mask semantics, failures, judge check and
wording), plus its tests; nothing else names it. Modules are found by listing this package,
and types are ordered by their ``order`` attribute, so the list of edit types — and the
order the planner draws them in, which decides the bytes of a build — exists only here.
A new type is opt-in (``default = False``) unless the default mix is meant to change.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import EditType

_REGISTRY: dict[str, EditType] = {}


def register(cls: type[EditType]) -> type[EditType]:
    """Class decorator: make ``cls`` an edit type (one instance, shared)."""
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"edit type {cls.__name__} needs a new, non-empty name (got {cls.name!r})")
    if cls.mask_from not in ("source", "target", "union"):
        raise ValueError(f"edit type {cls.name!r}: mask_from must be source, target or union")
    if not cls.templates:
        raise ValueError(f"edit type {cls.name!r} has no wording templates")
    _REGISTRY[cls.name] = cls()
    return cls


def _load() -> None:
    for mod in sorted(m.name for m in pkgutil.iter_modules(__path__)):
        if mod != "base" and not mod.startswith("_"):
            importlib.import_module(f"{__name__}.{mod}")


_load()
#: every edit type's name, in registry order
EDIT_TYPES: tuple[str, ...] = tuple(sorted(_REGISTRY, key=lambda n: (_REGISTRY[n].order, n)))
#: relative weight of each type in a mix that includes it
EDIT_WEIGHTS: dict[str, float] = {n: _REGISTRY[n].weight for n in EDIT_TYPES}
#: the default mix: the types with ``default = True``
DEFAULT_EDIT_WEIGHTS: dict[str, float] = {n: _REGISTRY[n].weight for n in EDIT_TYPES if _REGISTRY[n].default}


def edit_type(name: str) -> EditType:
    """The edit type called ``name``; a ValueError lists the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown edit type {name!r}; allowed: {', '.join(EDIT_TYPES)}") from None


__all__ = ["DEFAULT_EDIT_WEIGHTS", "EDIT_TYPES", "EDIT_WEIGHTS", "EditType", "edit_type", "register"]
