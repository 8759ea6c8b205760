"""Declared ranges of numeric options, checked the same way for a flag and for a keyword argument.

A :class:`Range` is declared once, beside the option it bounds (:mod:`matcli.jobs.options`); the
CLI's parser (:class:`matcli.cli.options.Number`) and the options' own validation both call
:meth:`Range.parse`, so ``--rtol 2`` and ``matcli.solve(..., rtol=2)`` are refused with the same words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: Largest iteration cap: ARPACK and the other compiled kernels take a C int.
MAX_ITERATIONS = 2**31 - 1
#: Largest --threads: more is a typo, not a machine (BLAS builds cap their pools far lower).
MAX_THREADS = 1024
#: Seeds are unsigned 64-bit integers (the output file's ``seed`` attribute).
MAX_SEED = 2**64 - 1
#: Largest matrix dimension: shapes and indices are int64.
MAX_DIMENSION = 2**63 - 1


@dataclass(frozen=True)
class Range:
    """A finite ``kind`` (int or float) in ``[low, high]``; ``low_open`` / ``high_open`` exclude a
    bound, None leaves that side unbounded, ``auto`` also accepts the word ``auto``.

    NaN and infinities are refused (a comparison with NaN is always false, so a bound alone lets
    it through); an int range refuses non-integral numbers and booleans.
    """

    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    auto: bool = False

    def noun(self) -> str:
        return "integer" if self.kind is int else "number"

    def interval(self) -> str:
        """The range: ``(0, 1)``, ``[0, 1)``, ``>= 1``, or empty when unbounded."""
        low, high = (None if b is None else str(b) if self.kind is int else f"{b:g}" for b in (self.low, self.high))
        if low is not None and high is not None:
            return f"{'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if low is not None:
            return f">{'' if self.low_open else '='} {low}"
        if high is not None:
            return f"<{'' if self.high_open else '='} {high}"
        return ""

    def describe(self) -> str:
        """For help texts and parser metavars: ``number in (0, 1)``, ``integer >= 1 or auto``."""
        return " ".join(filter(None, (self.noun(), self.interval()))) + (" or auto" if self.auto else "")

    def phrase(self) -> str:
        """The range, to follow "a finite number": ``in (0, 1)``, ``>= 1``, or empty."""
        interval = self.interval()
        return f"in {interval}" if interval[:1] in "([" and interval else interval

    def contains(self, value: float) -> bool:
        if self.kind is float and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def parse(self, value: Any) -> Any:
        """``value`` (text or number) as a ``kind`` in the range, or ``"auto"``.

        Raises ValueError with a sentence that names the value and the range (not the option:
        the caller knows its name).
        """
        text = str(value).strip()
        if self.auto and text.lower() == "auto":
            return "auto"
        article = "an" if self.kind is int else "a"
        try:
            if isinstance(value, bool):
                raise ValueError
            if self.kind is int and isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                value = int(value)
            number = self.kind(value if isinstance(value, (int, float)) else text)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"{text!r} is not {article} {self.noun()}" + (" or 'auto'" if self.auto else "")) from None
        if not self.contains(number):
            what = "a finite number" if self.kind is float else "an integer"
            raise ValueError(" ".join(filter(None, (f"{text} is not {what}", self.phrase()))))
        return number
