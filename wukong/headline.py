"""The metric names that summaries, gates and logs show, in their order.

Kept apart from :mod:`wukong.evaluate` (which computes the metrics with torch and torchmetrics) so that
the pipeline's light steps (gate, registration, report) name them without importing torch.
"""

HEADLINE = ("auc", "logloss", "ne", "calibration", "rows")
# shown too where the data has an oracle (the teacher source; see wukong.evaluate.oracle_metrics)
ORACLE_HEADLINE = ("excess_logloss", "oracle_logloss", "oracle_auc")
