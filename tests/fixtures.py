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
    genres: np.ndarray  # (movies, len(GENRES)) bool: the movie's genres
    years: np.ndarray  # 0: the title has no year
    quality: np.ndarray
    popularity: np.ndarray  # sampling probability of each movie


def _movies(rng: np.random.Generator, shape: MovieLensShape) -> _Movies:
    n = shape.movies
    ids = np.concatenate([[TOY_STORY[0]], np.sort(rng.choice(np.arange(2, 200_000), n - 1, replace=False))])
    years = rng.integers(1930, 2018, n)
    years[rng.random(n) < 0.01] = 0
    # 1-4 genres each (a random subset: the first k of a random order), none for 1% of the movies.
    order = np.argsort(rng.random((n, len(GENRES))), axis=1)
    counts = np.where(rng.random(n) < 0.01, 0, rng.integers(1, 5, n))
    genres = np.zeros((n, len(GENRES)), dtype=bool)
    np.put_along_axis(genres, order, np.arange(len(GENRES)) < counts[:, None], axis=1)
    genres[0] = np.isin(GENRES, TOY_STORY[2])
    names = [f"Movie {i}" + (", The" if k % 7 == 0 else "") for k, i in enumerate(ids)]  # a comma: quoted in CSV
    titles = [f"{name} ({year})" if year else name for name, year in zip(names, years)]
    titles[0], years[0] = TOY_STORY[1], 1995
    rank = np.concatenate([[0], rng.permutation(np.arange(1, n))])  # Toy Story is the most rated
    popularity = 1.0 / (rank + 30.0) ** 0.5  # a long tail, yet nearly every movie is rated
    return _Movies(ids, titles, genres, years, rng.standard_normal(n), popularity / popularity.sum())


def _write_movies(path: Path, movies: _Movies) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["movieId", "title", "genres"])
        for movie_id, title, has in zip(movies.ids, movies.titles, movies.genres):
            writer.writerow([movie_id, title, "|".join(g for g, h in zip(GENRES, has) if h) or "(no genres listed)"])


def _write_tags(path: Path, movies: _Movies, rng: np.random.Generator, shape: MovieLensShape) -> None:
    """About a third of the movies get 1-5 tags; spelling varies in case and spaces (the source lower-cases
    and trims them), and Toy Story is tagged ``Pixar``."""
    tagged = np.flatnonzero(rng.random(len(movies.ids)) < 0.35)
    tagged = tagged[tagged > 0]
    movie = np.repeat(tagged, rng.integers(1, 6, len(tagged)))
    word = rng.integers(0, shape.tag_words, len(movie))
    upper = rng.random(len(movie)) < 0.1
    user, when = rng.integers(1, shape.users + 1, len(movie)), rng.integers(1.1e9, 1.5e9, len(movie))
    lines = [
        "userId,movieId,tag,timestamp",
        f"7,{TOY_STORY[0]}, Pixar,1139045764",
        f"9,{TOY_STORY[0]},{TOY_STORY[3]},1139045765",
    ]
    for m, w, up, u, t in zip(movie, word, upper, user, when):
        lines.append(f"{u},{movies.ids[m]},{'TAG' if up else 'tag'}{w:04d},{t}")
    path.write_text("\n".join(lines) + "\n")


def _write_ratings(path: Path, movies: _Movies, rng: np.random.Generator, shape: MovieLensShape) -> None:
    """Every user rates ``max(5, Poisson(ratings_per_user))`` movies drawn by popularity (repeats dropped),
    over up to a year from a start between 1996 and 2017; rows sorted by user, then movie."""
    mix = movies.genres / np.maximum(movies.genres.sum(axis=1, keepdims=True), 1)  # mix @ taste[u]: mean taste
    bias = rng.standard_normal(shape.users)
    taste = rng.standard_normal((shape.users, len(GENRES)))
    classic = 0.4 * ((movies.years > 0) & (movies.years < 1980))
    draws = np.maximum(5, rng.poisson(shape.ratings_per_user, shape.users))
    user = np.repeat(np.arange(shape.users), draws)
    movie = rng.choice(len(movies.ids), len(user), p=movies.popularity)
    pairs = np.unique(user * len(movies.ids) + movie)
    user, movie = pairs // len(movies.ids), pairs % len(movies.ids)
    z = bias[user] + movies.quality[movie] + (mix[movie] * taste[user]).sum(axis=1) + classic[movie]
    stars = np.clip(np.round((3.6 + 0.8 * z + rng.normal(0, 0.6, len(user))) * 2) / 2, 0.5, 5.0)
    times = rng.integers(8.3e8, 1.5e9, shape.users)[user] + rng.integers(0, 3.2e7, len(user))
    lines = ["userId,movieId,rating,timestamp"]
    for u, m, star, when in zip(user + 1, movies.ids[movie], stars, times):
        lines.append(f"{u},{m},{star:.1f},{when}")
    lines.append(f"1,{UNKNOWN_MOVIE},5.0,{times[-1]}")
    path.write_text("\n".join(lines) + "\n")
