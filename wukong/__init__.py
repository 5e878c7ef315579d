"""Wukong: stacked factorization machines for large-scale recommendation, trained on Kubernetes.

The package is layered so that each part can be used alone:

- :mod:`wukong.model`: the Wukong interaction stack, its baselines and the embedding layer.
- :mod:`wukong.config`: dataclass settings, YAML presets and ``--set`` overrides.
- :mod:`wukong.schema`: the feature schema shared by data and model.
"""

__version__ = "0.1.0"
