"""Estimators outside hptune's allow-list, for tests/test_model_format.py: hptune imports them as
``tests.skops_estimators.<Class>`` with ``--allow-module tests``."""

from __future__ import annotations

import enum
import re

from sklearn.linear_model import LogisticRegression


class RenamedLogistic(LogisticRegression):
    """scikit-learn's model under a name of its own: skops saves it, hptune does not trust it."""


class Link(enum.Enum):
    IDENTITY = "identity"


class HoldsAnEnum(LogisticRegression):
    """Keeps an enum member after fitting (as some libraries' models do): pickle saves it, skops
    writes it but cannot build it back."""

    def fit(self, X, y, sample_weight=None):  # noqa: N803 - scikit-learn's names
        super().fit(X, y, sample_weight)
        self.link_ = Link.IDENTITY
        return self


class HoldsAPattern(LogisticRegression):
    """Keeps a compiled regular expression after fitting: pickle saves it, skops cannot."""

    def fit(self, X, y, sample_weight=None):  # noqa: N803 - scikit-learn's names
        super().fit(X, y, sample_weight)
        self.token_pattern_ = re.compile(r"\w+")
        return self
