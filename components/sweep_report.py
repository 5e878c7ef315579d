"""Sweep report: fit a power law per family and plot quality against compute, for the Kubeflow UI."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Markdown, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def sweep_report(
    records: list, split: str, report: Output[HTML], summary: Output[Markdown], sweep: Output[Dataset]
) -> str:
    """The HTML report (figures embedded) and the Markdown tables as artifacts, the records as
    ``sweep.jsonl`` (the data that regenerates them: ``wukong sweep report``); returns the laws as JSON."""
    import json

    from wukong.experiments.report import build_report

    rows = [json.loads(r) for r in records]
    result = build_report(rows, split)
    with open(report.path, "w") as f:
        f.write(result.html)
    with open(summary.path, "w") as f:
        f.write(result.markdown)
    with open(sweep.path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    sweep.metadata["points"] = len(rows)
    return json.dumps([law.to_dict() for law in result.laws])
