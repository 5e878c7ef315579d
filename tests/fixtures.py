r"""Test data the suite writes itself, so that it never needs the shared MovieLens copy.

:func:`write_movielens` writes an ``ml-latest-small``-format folder (ratings.csv, movies.csv, tags.csv)
whose labels follow a known model, so training on it learns. Its tables span the hybrid plan's
ranges under the default thresholds (``train.row_wise_min_rows`` 5 000, ``data_parallel_max_rows``
128): ``movie_id`` is row-wise, ``user_id`` and ``movie_tags`` are table-wise, the year, hour,
weekday and genre tables are replicated. Ratings carry spread-out timestamps for ``--split-by time``.

The rating model, per rating of movie :math:`m` by user :math:`u`:

.. math::
    z = b_u + q_m + \tfrac{1}{|G_m|}\sum_{g \in G_m} t_{ug} + 0.4\,[\text{year}_m < 1980],\qquad
    \text{stars} = \operatorname{clip}_{[0.5, 5]}\big(\operatorname{round}_{1/2}(3.6 + 0.8 z + \varepsilon)\big)

with user bias :math:`b_u`, movie quality :math:`q_m`, the user's taste :math:`t_{ug}` for each of
the movie's genres :math:`G_m` (all standard normal) and noise :math:`\varepsilon \sim N(0, 0.6^2)`.
The label (stars >= 4) is then about half positive, and mostly explained by the ids and genres.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "IMAX",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
TOY_STORY = (1, "Toy Story (1995)", ("Adventure", "Animation", "Children", "Comedy", "Fantasy"), "pixar")
UNKNOWN_MOVIE = 999_999  # the last rating names it: one "unknown movie" reject, as in the shared copy


@dataclass(frozen=True)
class MovieLensShape:
    """How big the generated folder is (defaults: ~60 000 ratings, 3 000 users, 6 000 movies)."""

    users: int = 3_000
    movies: int = 6_000
    ratings_per_user: int = 20
    tag_words: int = 1_200
    seed: int = 0


def write_movielens(folder: Path, shape: MovieLensShape = MovieLensShape()) -> Path:
    """Write ratings.csv, movies.csv and tags.csv into ``folder`` (created); returns ``folder``."""
    rng = np.random.default_rng(shape.seed)
    folder.mkdir(parents=True, exist_ok=True)
    movies = _movies(rng, shape)
    _write_movies(folder / "movies.csv", movies)
    _write_tags(folder / "tags.csv", movies, rng, shape)
    _write_ratings(folder / "ratings.csv", movies, rng, shape)
    return folder


@dataclass
class _Movies:
    ids: np.ndarray
    titles: list[str]
    genres: list[tuple[str, ...]]
    years: np.ndarray  # 0: the title has no year
    quality: np.ndarray
    popularity: np.ndarray  # sampling probability of each movie


def _movies(rng: np.random.Generator, shape: MovieLensShape) -> _Movies:
    n = shape.movies
    ids = np.concatenate([[TOY_STORY[0]], np.sort(rng.choice(np.arange(2, 200_000), n - 1, replace=False))])
    years = rng.integers(1930, 2018, n)
    years[rng.random(n) < 0.01] = 0
    titles, genres = [], []
    for i in range(n):
        name = f"Movie {ids[i]}" + (", The" if i % 7 == 0 else "")  # a comma: the title needs CSV quoting
        titles.append(f"{name} ({years[i]})" if years[i] else name)
        count = rng.integers(1, 5)
        genres.append(tuple(sorted(rng.choice(GENRES, count, replace=False))) if rng.random() > 0.01 else ())
    titles[0], genres[0], years[0] = TOY_STORY[1], TOY_STORY[2], 1995
    rank = np.concatenate([[0], rng.permutation(np.arange(1, n))])  # Toy Story is the most rated
    popularity = 1.0 / (rank + 30.0) ** 0.5  # a long tail, yet nearly every movie is rated
    return _Movies(ids, titles, genres, years, rng.standard_normal(n), popularity / popularity.sum())


def _write_movies(path: Path, movies: _Movies) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["movieId", "title", "genres"])
        for movie_id, title, genres in zip(movies.ids, movies.titles, movies.genres):
            writer.writerow([movie_id, title, "|".join(genres) or "(no genres listed)"])


def _write_tags(path: Path, movies: _Movies, rng: np.random.Generator, shape: MovieLensShape) -> None:
    """About a third of the movies get 1-5 tags; spelling varies in case and spaces (the source lower-cases
    and trims them), and Toy Story is tagged ``Pixar``."""
    words = [f"tag{i:04d}" for i in range(shape.tag_words)]
    rows = [(7, TOY_STORY[0], " Pixar", 1_139_045_764), (9, TOY_STORY[0], "pixar", 1_139_045_765)]
    for movie_id in movies.ids[1:][rng.random(len(movies.ids) - 1) < 0.35]:
        for word in rng.choice(words, rng.integers(1, 6), replace=False):
            spelled = word.upper() if rng.random() < 0.1 else word
            user, when = int(rng.integers(1, shape.users + 1)), int(rng.integers(1.1e9, 1.5e9))
            rows.append((user, int(movie_id), spelled, when))
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["userId", "movieId", "tag", "timestamp"])
        writer.writerows(rows)


def _write_ratings(path: Path, movies: _Movies, rng: np.random.Generator, shape: MovieLensShape) -> None:
    # Row m of `mix` averages the movie's genres, so mix @ taste[u] is the user's mean taste for them.
    mix = np.zeros((len(movies.ids), len(GENRES)))
    for m, genres in enumerate(movies.genres):
        for genre in genres:
            mix[m, GENRES.index(genre)] = 1.0 / len(genres)
    bias = rng.standard_normal(shape.users)
    taste = rng.standard_normal((shape.users, len(GENRES)))
    classic = 0.4 * ((movies.years > 0) & (movies.years < 1980))
    with path.open("w", newline="") as out:
        out.write("userId,movieId,rating,timestamp\n")
        for user in range(shape.users):
            count = max(5, int(rng.poisson(shape.ratings_per_user)))
            chosen = np.unique(rng.choice(len(movies.ids), count, p=movies.popularity))
            z = bias[user] + movies.quality[chosen] + mix[chosen] @ taste[user] + classic[chosen]
            stars = np.clip(np.round((3.6 + 0.8 * z + rng.normal(0, 0.6, len(chosen))) * 2) / 2, 0.5, 5.0)
            start = rng.integers(8.3e8, 1.5e9)  # 1996 to 2017; a user's ratings span up to a year
            times = np.sort(start + rng.integers(0, 3.2e7, len(chosen)))
            for m, star, when in zip(chosen, stars, times):
                out.write(f"{user + 1},{movies.ids[m]},{star:.1f},{when}\n")
        out.write(f"1,{UNKNOWN_MOVIE},5.0,{int(start)}\n")
