"""Quality gates: whether a finished run's model is good enough to ship.

``gate: {min_cv_score, min_test_score}`` in the file, or ``--fail-under`` for the CV score. The
verdicts go into run.json (``gates``) and the result; the CLI exits 3 when one is missed, after
every output is written, so a CI job keeps the files that show why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    gate: str  # min_cv_score | min_test_score
    threshold: float
    value: float | None  # the score it judged (None: there was none, which misses the gate)
    passed: bool

    def record(self) -> dict[str, Any]:
        return {"gate": self.gate, "threshold": self.threshold, "value": self.value, "passed": self.passed}


def judge(gate: Any, cv_score: float | None, test_score: float | None) -> list[Verdict]:
    """One verdict per gate the spec sets (``gate`` may be None: no gates)."""
    if gate is None:
        return []
    verdicts = []
    for name, value in (("min_cv_score", cv_score), ("min_test_score", test_score)):
        threshold = getattr(gate, name)
        if threshold is not None:
            verdicts.append(Verdict(name, threshold, value, value is not None and value >= threshold))
    return verdicts
