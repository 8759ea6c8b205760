"""Registered complete methods (no heavy imports here)."""

from matcli.core.registry import MethodSpec, ParamSpec

SPECS: list[MethodSpec] = []
