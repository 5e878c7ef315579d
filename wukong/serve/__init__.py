"""Serving a trained model outside the training code: ``wukong export`` and ``wukong predict``.

- :mod:`wukong.serve.artifact`: the exported artifact (a ``torch.export`` program of the plain-torch
  :class:`~wukong.model.inference.InferenceModel`, the vocabularies, ``signature.json``).
- :mod:`wukong.serve.predict`: :class:`~wukong.serve.predict.ServedModel`, raw rows → probabilities
  with the training preprocessing, and the Parquet-to-Parquet scoring of ``wukong predict``.
- :mod:`wukong.serve.locate`: what ``--model`` names (a folder or a registry version).

Nothing here imports TorchRec.
"""
