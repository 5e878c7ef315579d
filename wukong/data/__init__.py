"""Datasets: sources, preprocessing, shards and the batches the models consume."""
