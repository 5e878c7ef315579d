"""GroupLens MovieLens (``ml-latest-small`` layout: ratings.csv, movies.csv, tags.csv) as a CTR task.

Each rating is one example, labelled 1 when the rating is at least 4 stars. Features:

- sparse: ``user_id``, ``movie_id``, ``release_year`` (from the title), ``rating_year``,
  ``rating_hour`` and ``rating_weekday`` (UTC), and the multi-hot ``genres`` and ``movie_tags``
  (the tags users gave the movie, lower-cased);
- dense: ``movie_age`` (rating year - release year) and ``num_genres``;
- time: the rating's ``timestamp`` (for ``--split-by time``).

ratings.csv is streamed (any size); movies.csv and tags.csv are per-movie tables held in memory.
Without ``--input`` the data set is downloaded from GroupLens and checked against its published MD5.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from wukong.data.errors import DataError
from wukong.data.sources.base import RawChunk, Reject, Source, SourceSpec
from wukong.data.sources.text import INT, NUMBER, read_delimited, to_float, to_int, validate

DEFAULT_URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
RATING_COLUMNS = ("userId", "movieId", "rating", "timestamp")
RULES = {
    "userId": (INT, "non-numeric user id"),
    "movieId": (INT, "non-numeric movie id"),
    "rating": (NUMBER, "non-numeric rating"),
    "timestamp": (INT, "non-numeric timestamp"),
}
SPARSE = (
    ("user_id", False),
    ("movie_id", False),
    ("release_year", False),
    ("rating_year", False),
    ("rating_hour", False),
    ("rating_weekday", False),
    ("genres", True),
    ("movie_tags", True),
)


def _movies(folder: Path) -> pa.Table:
    """movieId, genres (list), release_year (nullable), movie_tags (list) per movie."""
    path = folder / "movies.csv"
    if not path.is_file():
        raise DataError(f"{folder}: no movies.csv; --input must be an ml-latest-small style folder")
    types = {"movieId": pa.int64(), "title": pa.string(), "genres": pa.string()}
    try:
        movies = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
    except pa.ArrowInvalid as error:
        raise DataError(f"{path}: unreadable ({str(error).splitlines()[0]})") from None
    genres = pc.split_pattern(movies.column("genres"), "|")
    no_genre = pc.equal(movies.column("genres"), "(no genres listed)")
    genres = pc.if_else(no_genre, pa.scalar([], pa.list_(pa.string())), genres)
    match = pc.extract_regex(movies.column("title"), r"\((?P<year>[0-9]{4})\)\s*$").combine_chunks()
    year = pc.if_else(pc.is_valid(match), match.field("year"), pa.scalar(None, pa.string()))
    tags = _tags(folder / "tags.csv")
    index = pc.index_in(movies.column("movieId"), value_set=tags.column("movieId"))
    movie_tags = pc.if_else(
        pc.is_valid(index), pc.take(tags.column("tags"), index), pa.scalar([], pa.list_(pa.string()))
    )
    return pa.table(
        {
            "movieId": movies.column("movieId"),
            "genres": genres,
            "release_year": pc.cast(year, pa.int64()),
            "movie_tags": movie_tags,
        }
    )


def _tags(path: Path) -> pa.Table:
    if not path.is_file():
        return pa.table({"movieId": pa.array([], pa.int64()), "tags": pa.array([], pa.list_(pa.string()))})
    types = {"userId": pa.int64(), "movieId": pa.int64(), "tag": pa.string(), "timestamp": pa.int64()}
    tags = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
    lowered = pa.table(
        {"movieId": tags.column("movieId"), "tag": pc.utf8_lower(pc.utf8_trim_whitespace(tags.column("tag")))}
    )
    return lowered.group_by("movieId").aggregate([("tag", "distinct")]).rename_columns(["movieId", "tags"])


class MovieLensSource(Source):
    name = "movielens"
    spec = SourceSpec(label="label", dense=("movie_age", "num_genres"), sparse=SPARSE, time="timestamp")

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        if not self.folder.exists():
            raise DataError(f"{self.folder}: input does not exist; check --input (or omit it to download)")
        self.ratings = self.folder / "ratings.csv" if self.folder.is_dir() else self.folder
        if not self.ratings.is_file():
            raise DataError(f"{self.folder}: no ratings.csv; --input must be an ml-latest-small style folder")
        self.movies = _movies(self.ratings.parent)

    def chunks(self) -> Iterator[RawChunk]:
        for batch, skipped in read_delimited(self.ratings, RATING_COLUMNS, ",", header=True):
            valid, rejects = validate(batch, RULES, ",")
            movie_id = to_int(valid.column("movieId"))
            row = pc.index_in(movie_id, value_set=self.movies.column("movieId"))
            known = pc.is_valid(row).to_numpy(zero_copy_only=False)
            if not known.all():
                rejects += [
                    Reject("unknown movie", f"movieId {m}")
                    for m in pc.filter(movie_id, pc.invert(pc.is_valid(row))).to_pylist()
                ]
                valid, movie_id, row = valid.filter(known), movie_id.filter(known), row.filter(known)
            yield RawChunk(self._features(valid, movie_id, row), skipped + rejects)

    def _features(self, ratings: pa.RecordBatch, movie_id: pa.Array, row: pa.Array) -> pa.Table:
        timestamp = to_int(ratings.column("timestamp"))
        when = pc.cast(timestamp, pa.timestamp("s"))
        rating_year = pc.year(when)
        release_year = pc.take(self.movies.column("release_year"), row)
        genres = pc.take(self.movies.column("genres"), row)
        age = pc.max_element_wise(pc.subtract(rating_year, release_year), 0)
        return pa.table(
            {
                "label": pc.cast(pc.greater_equal(to_float(ratings.column("rating")), 4.0), pa.int64()),
                "movie_age": age,
                "num_genres": pc.list_value_length(genres),
                "user_id": to_int(ratings.column("userId")),
                "movie_id": movie_id,
                "release_year": release_year,
                "rating_year": rating_year,
                "rating_hour": pc.hour(when),
                "rating_weekday": pc.day_of_week(when),
                "genres": genres,
                "movie_tags": pc.take(self.movies.column("movie_tags"), row),
                "timestamp": timestamp,
            }
        )

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "input": str(self.folder), "label": "rating >= 4"}


def download_movielens(cache_dir: Path, url: str | None = None) -> Path:
    """Download and unpack ml-latest-small (once), verifying the zip against GroupLens' published MD5.

    The URL can be redirected with ``WUKONG_MOVIELENS_URL`` (a mirror); ``<url>.md5`` must sit beside it.
    """
    url = url or os.environ.get("WUKONG_MOVIELENS_URL", DEFAULT_URL)
    name = Path(url).stem
    target = cache_dir / name
    if (target / "ratings.csv").is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    archive = cache_dir / f"{name}.zip.part"
    try:
        expected = urllib.request.urlopen(url + ".md5", timeout=60).read().decode().split()[0].lower()
        with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
            digest = hashlib.md5()
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError, IndexError) as error:
        archive.unlink(missing_ok=True)
        raise DataError(f"{url}: download failed ({error}); pass --input with a local copy") from None
    if digest.hexdigest() != expected:
        archive.unlink(missing_ok=True)
        raise DataError(f"{url}: MD5 mismatch (got {digest.hexdigest()}, published {expected}); download again")
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(cache_dir)
    archive.unlink()
    if not (target / "ratings.csv").is_file():
        raise DataError(f"{url}: the archive holds no {name}/ratings.csv")
    return target
