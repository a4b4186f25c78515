"""The analysis: pure metrics (``metrics``: arrays in, arrays out), the shaping of its outputs
(``outputs``: analysis.json's records and the CSV tables), the faithfulness summaries
(``faithfulness``: AUCs, Average Drop, Increase in Confidence), the sanity checks' similarities
(``sanity``: Spearman and SSIM) and the stage that streams the render
store and writes ``RUN/analysis/`` (``analyze_run``). Imports no torch."""

from edvis.analyze import faithfulness, metrics, sanity
from edvis.analyze.outputs import SCHEMA_VERSION
from edvis.analyze.stage import AnalysisError, analyze_run

__all__ = ["SCHEMA_VERSION", "AnalysisError", "analyze_run", "faithfulness", "metrics", "sanity"]
