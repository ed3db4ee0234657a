"""hptune: tune a scikit-learn-compatible model from one YAML file.

This module stays light: importing ``hptune`` must not import scikit-learn or Optuna.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
