"""The analysis: pure metrics (``metrics``: arrays in, arrays out) and the stage that writes
``RUN/analysis/`` from the render store (``analyze_run``). Imports no torch."""

from edvis.analyze import metrics
from edvis.analyze.stage import SCHEMA_VERSION, AnalysisError, analyze_run

__all__ = ["SCHEMA_VERSION", "AnalysisError", "analyze_run", "metrics"]
