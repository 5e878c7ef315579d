"""Evaluate: metrics, the ROC curve and confusion matrix for the Kubeflow UI, and an HTML report."""

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    dataset: Input[Dataset],
    model: Input[Model],
    split: str,
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    report: Output[HTML],
    summary: Output[Markdown],
) -> float:
    """Returns the AUC (for the pipeline's registration condition); all metrics go to the artifacts and to
    ``eval-<split>.json`` in the training output."""
    import json

    from wukong.headline import HEADLINE
    from wukong.io import open_storage
    from wukong.pipeline import steps
    from wukong.pipeline.report import markdown, render

    result = steps.evaluate(model.metadata["uri"], dataset.metadata["uri"], split)
    headline = {k: result[k] for k in (*HEADLINE, "positive_rate")}
    for name, value in headline.items():
        metrics.log_metric(name, value)
    roc = result["curves"]["roc"]
    every = max(1, len(roc["fpr"]) // 50)  # about 50 points are plenty for the UI's chart
    classification.log_roc_curve(roc["fpr"][::every], roc["tpr"][::every], roc["thresholds"][::every])
    confusion = result["curves"]["confusion_matrix"]
    classification.log_confusion_matrix(confusion["labels"], confusion["matrix"])
    run = open_storage(model.metadata["uri"])
    card = json.loads(run.read_bytes("model_card.json"))
    history = [json.loads(line) for line in run.read_bytes("history.jsonl").decode().splitlines()]
    html = render(card, history, result)
    with open(report.path, "w") as f:
        f.write(html)
    run.write_bytes(f"report-{split}.html", html.encode())
    with open(summary.path, "w") as f:
        f.write(markdown(card, result))
    return float(result["auc"])
