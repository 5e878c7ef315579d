"""The pipeline's steps as plain functions (the KFP components in ``components/`` wrap them), the
HTML report, and submitting or scheduling runs on a Kubeflow Pipelines server."""
