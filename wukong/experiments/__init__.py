"""Experiments that train many models: hyper-parameter tuning and scaling-law sweeps.

- :mod:`wukong.experiments.journal`: the append-only JSONL record of finished trials (what resumes).
- :mod:`wukong.experiments.trials`: one trial (train + evaluate) and the runner that runs many as
  parallel local processes, resumably; the KFP components run the same trial function.
- :mod:`wukong.experiments.space`: search spaces over config keys (YAML).
- :mod:`wukong.experiments.tune`: ``wukong tune``: seeded TPE or random search on the validation split.
- :mod:`wukong.experiments.sweep`: ``wukong sweep``: models upscaled to a FLOP range, one data budget.
- :mod:`wukong.experiments.powerlaw`, :mod:`wukong.experiments.plots`, :mod:`wukong.experiments.report`:
  the fitted scaling laws, their figures and the HTML/Markdown report.

Nothing here imports KFP; the pipeline components in ``components/`` call these functions.
"""
