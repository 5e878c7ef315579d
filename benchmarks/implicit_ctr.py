"""A small all-categorical implicit-feedback CTR set from MovieLens: the regime of issue 10's held-out set.

Issue 10's held-out benchmark has 10 categorical fields, about 46k training rows and AUCs near 0.94;
MovieLens's explicit "rating ≥ 4" task (AUC ≈ 0.80) is a different regime. This builds the usual
implicit-feedback construction (as app-usage logs are turned into CTR sets): every rating event is a
positive (the user chose this movie in this context), and ``--negatives`` copies of its context with
a movie drawn uniformly from those the user never rated are negatives. Ten categorical fields:

- user: ``user_id``; context (from the event's UTC time): ``year``, ``weekday``, ``weekend``, ``daypart``
  (night/morning/afternoon/evening), ``hour``;
- item: ``movie_id``, ``release_decade``, ``main_genre`` (first listed), ``num_genres``.

The events are sampled without replacement to ``--train + --valid + --test`` positives-with-negatives
rows and split at random (seeded); the three Parquet files and the feature spec go to ``--output``::

    python benchmarks/implicit_ctr.py --input ../shared/data/ml-latest-small --output /tmp/implicit
    python benchmarks/results.py --split-files /tmp/implicit/{train,valid,test}.parquet \\
        --spec /tmp/implicit/features.yaml --config small-ctr
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

FIELDS = (
    "user_id",
    "year",
    "weekday",
    "weekend",
    "daypart",
    "hour",
    "movie_id",
    "release_decade",
    "main_genre",
    "num_genres",
)
YEAR = re.compile(r"\((\d{4})\)\s*$")


def movie_table(path: Path) -> dict[str, np.ndarray]:
    """Per-movie item fields, indexed by position in ``movie_id``."""
    movies = pacsv.read_csv(path).to_pydict()
    years = [YEAR.search(title or "") for title in movies["title"]]
    genres = [g.split("|") for g in movies["genres"]]
    return {
        "movie_id": np.asarray(movies["movieId"]),
        "release_decade": np.asarray([int(y.group(1)) // 10 * 10 if y else 0 for y in years]),
        "main_genre": np.asarray([g[0] for g in genres]),
        "num_genres": np.asarray([min(len(g), 5) for g in genres]),
    }


def build(folder: Path, rows: int, negatives: int, seed: int) -> pa.Table:
    """``rows`` labelled rows: positives (rating events) and ``negatives`` random unrated movies each."""
    rng = np.random.default_rng(seed)
    ratings = pacsv.read_csv(folder / "ratings.csv").to_pydict()
    items = movie_table(folder / "movies.csv")
    users, movies, stamps = (np.asarray(ratings[c]) for c in ("userId", "movieId", "timestamp"))
    position = {movie: i for i, movie in enumerate(items["movie_id"])}
    rated = {(u, m) for u, m in zip(users.tolist(), movies.tolist(), strict=True)}
    events = rng.choice(len(users), size=rows // (1 + negatives), replace=False)

    def unrated(user: int) -> int:
        """A movie position drawn uniformly from those ``user`` never rated."""
        while True:
            pick = int(rng.integers(len(position)))
            if (user, items["movie_id"][pick]) not in rated:
                return pick

    user, stamp, item, label = [], [], [], []
    for e in events.tolist():
        picks = [position[movies[e]]] + [unrated(users[e]) for _ in range(negatives)]
        user += [users[e]] * len(picks)
        stamp += [stamps[e]] * len(picks)
        item += picks
        label += [1] + [0] * negatives
    when = np.asarray(stamp).astype("datetime64[s]")
    hours = (when - when.astype("datetime64[D]")).astype("timedelta64[h]").astype(int)
    weekday = (when.astype("datetime64[D]").astype(int) + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
    item = np.asarray(item)
    columns = {
        "label": np.asarray(label, dtype=np.float32),
        "user_id": np.asarray(user),
        "year": when.astype("datetime64[Y]").astype(int) + 1970,
        "weekday": weekday,
        "weekend": (weekday >= 5).astype(int),
        "daypart": hours // 6,
        "hour": hours,
        **{name: values[item] for name, values in items.items()},
    }
    return pa.table(columns).take(rng.permutation(len(label)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True, help="an ml-latest-small folder")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--train", type=int, default=46_000)
    parser.add_argument("--valid", type=int, default=15_000)
    parser.add_argument("--test", type=int, default=15_000)
    parser.add_argument("--negatives", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.input / "ratings.csv").is_file():
        parser.error(f"{args.input}: no ratings.csv; pass an ml-latest-small folder")
    table = build(args.input, args.train + args.valid + args.test, args.negatives, args.seed)
    args.output.mkdir(parents=True, exist_ok=True)
    start = 0
    for split, size in (("train", args.train), ("valid", args.valid), ("test", args.test)):
        pq.write_table(table.slice(start, size), args.output / f"{split}.parquet")
        start += size
    (args.output / "features.yaml").write_text(f"label: label\ndense: []\nsparse: [{', '.join(FIELDS)}]\n")
    positives = float(np.mean(table["label"].to_numpy()))
    print(f"{len(table):,} rows ({positives:.1%} positive), {len(FIELDS)} fields -> {args.output}")


if __name__ == "__main__":
    main()
