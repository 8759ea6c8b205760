"""Registry of numerical methods: one explicit list, built from each family's ``specs.py``.

Specs refer to their kernel by import path so that listing methods (CLI choices, ``--help``)
never imports numpy/scipy; :meth:`MethodSpec.load` imports the kernel when a job runs.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from matcli.core.errors import UsageError

FAMILIES = ("solve", "complete", "sketch", "factorize")

_CASTS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "str": str,
}


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


@dataclass(frozen=True)
class ParamSpec:
    """A method-specific parameter accepted as ``--param name=value``.

    ``kind`` is one of ``int``, ``float``, ``str``, ``bool``; ``choices`` restricts ``str`` values;
    ``low``/``high`` bound numeric values (inclusive). Every float must be finite, bounded or not.
    """

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None

    def allowed(self) -> str:
        """The allowed values, to follow "must be": ``in [0, 1]``, ``>= 1``, ``one of V, W, F``."""
        if self.choices is not None:
            return f"one of {', '.join(self.choices)}"
        if self.low is not None and self.high is not None:
            return f"in [{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f">= {self.low:g}"
        if self.high is not None:
            return f"<= {self.high:g}"
        return {"float": "a finite number", "int": "an integer", "bool": "true or false"}.get(self.kind, "a string")

    def parse(self, text: str) -> Any:
        """The value of ``--param name=text``; :class:`UsageError` naming the parameter and its range."""
        try:
            value = _parse_bool(text) if self.kind == "bool" else _CASTS[self.kind](text)
        except ValueError:
            raise UsageError(f"--param {self.name}={text}: expected {'an' if self.kind == 'int' else 'a'} "
                             f"{self.kind} ({self.allowed()})") from None
        outside = (
            (self.choices is not None and value not in self.choices)
            or (self.kind == "float" and not math.isfinite(value))
            or (self.low is not None and value < self.low)
            or (self.high is not None and value > self.high)
        )
        if outside:
            raise UsageError(f"--param {self.name}={text}: must be {self.allowed()}")
        return value


@dataclass(frozen=True)
class MethodSpec:
    """One registered method.

    Attributes
    ----------
    family : str
        One of :data:`FAMILIES`.
    name : str
        The ``--method`` / ``--kind`` value.
    function : str
        ``"package.module:callable"`` of the kernel (or of its setup factory).
    summary : str
        One line shown by ``matcli methods``.
    params : tuple[ParamSpec, ...]
        Method-specific parameters accepted through ``--param``.
    constraints : tuple[str, ...]
        Requirements on the input, in words (``"square"``, ``"spd"``, ``"real"``); ``auto`` and
        validation use them.
    """

    family: str
    name: str
    function: str
    summary: str
    params: tuple[ParamSpec, ...] = ()
    constraints: tuple[str, ...] = field(default_factory=tuple)

    def load(self) -> Callable[..., Any]:
        module_name, _, attr = self.function.partition(":")
        return getattr(importlib.import_module(module_name), attr)

    def param(self, name: str) -> ParamSpec:
        for spec in self.params:
            if spec.name == name:
                return spec
        known = ", ".join(p.name for p in self.params) or "none"
        raise UsageError(f"method {self.name!r} has no parameter {name!r} (known: {known})")

    def resolve_params(self, pairs: list[str] | None) -> dict[str, Any]:
        """Parse ``key=value`` strings against the spec; return every parameter with its value.

        Unknown keys and malformed values raise :class:`UsageError`.
        """
        values = {p.name: p.default for p in self.params}
        for pair in pairs or []:
            key, sep, text = pair.partition("=")
            if not sep or not key:
                raise UsageError(f"--param {pair!r}: expected key=value")
            values[key] = self.param(key.strip()).parse(text.strip())
        return values


def all_specs() -> list[MethodSpec]:
    """Every registered method, in family order."""
    from matcli.methods.complete.specs import SPECS as complete_specs
    from matcli.methods.factorize.specs import SPECS as factorize_specs
    from matcli.methods.sketch.specs import SPECS as sketch_specs
    from matcli.methods.solve.specs import SPECS as solve_specs

    return [*solve_specs, *complete_specs, *sketch_specs, *factorize_specs]


def specs_for(family: str) -> list[MethodSpec]:
    return [s for s in all_specs() if s.family == family]


def method_names(family: str) -> list[str]:
    return [s.name for s in specs_for(family)]


def get_spec(family: str, name: str) -> MethodSpec:
    for spec in specs_for(family):
        if spec.name == name:
            return spec
    choices = ", ".join(method_names(family))
    raise UsageError(f"unknown {family} method {name!r}; choose one of: {choices}")
