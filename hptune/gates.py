"""Quality gates: whether a finished run's model is good enough to ship.

``gate: {min_cv_score, min_test_score}`` in the file, or ``--fail-under`` for the CV score. The
verdicts go into run.json (``gates``) and the result; the CLI exits 3 when one is missed, after
every output is written, so a CI job keeps the files that show why. ``--require-improvement``
adds a verdict of the same kind (``hptune.baseline``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    gate: str  # min_cv_score | min_test_score | require_improvement (hptune.baseline)
    threshold: float  # require_improvement: the standard error the improvement must beat
    value: float | None  # the score it judged (None: there was none, which misses the gate)
    passed: bool
    detail: str | None = None  # require_improvement: the comparison in one line

    @property
    def title(self) -> str:
        """``min_cv_score 0.9``; ``require_improvement`` (its bar is in the detail)."""
        return self.gate if self.detail else f"{self.gate} {self.threshold:g}"

    def describe(self, metric: str) -> str:
        """What it judged, in words: ``cv accuracy is 0.9123``, or the detail."""
        if self.detail:
            return self.detail
        score = "cv" if self.gate == "min_cv_score" else "test"
        return f"{score} {metric} is {'none' if self.value is None else f'{self.value:.4f}'}"

    def record(self) -> dict[str, Any]:
        record = {"gate": self.gate, "threshold": self.threshold, "value": self.value, "passed": self.passed}
        return record | ({"detail": self.detail} if self.detail else {})


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
