"""Each source: what it reads, what it rejects and why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from wukong.data.errors import DataError
from wukong.data.sources import open_source
from wukong.data.sources.criteo import CriteoSource
from wukong.data.sources.movielens import MovieLensSource
from wukong.data.sources.synthetic import SyntheticSource

from .conftest import criteo_lines, write_criteo


def read_all(source):
    tables, rejects = [], []
    for chunk in source.chunks():
        tables.append(chunk.table)
        rejects += chunk.rejects
    return pa.concat_tables(tables) if tables else None, rejects


@pytest.mark.parametrize("compress", [False, True])
def test_criteo_reads_plain_and_gzip(tmp_path: Path, compress: bool) -> None:
    lines = criteo_lines(500)
    table, rejects = read_all(CriteoSource(write_criteo(tmp_path / "day_0", lines, compress)))
    assert table.num_rows == 500 and not rejects
    first = lines[0].split("\t")
    assert table.column("label")[0].as_py() == int(first[0])
    assert table.column("int_0")[0].as_py() == (int(first[1]) if first[1] else None)
    assert table.column("cat_0")[0].as_py() == first[14].encode()


def test_criteo_rejects_malformed_rows_with_reasons(tmp_path: Path) -> None:
    good = criteo_lines(20)
    fields = good[0].split("\t")
    bad_dense = "\t".join([fields[0], "12abc", *fields[2:]])
    bad_cat = "\t".join([*fields[:14], "not-hex!", *fields[15:]])
    bad_label = "\t".join(["7", *fields[1:]])
    short = "\t".join(fields[:10])
    path = tmp_path / "mixed"
    body = "\n".join([*good[:10], bad_dense, short, bad_cat, bad_label, *good[10:]]).encode()
    body += b"\n" + "\t".join(fields[:14]).encode() + b"\t\xff\xfe\x00\x01\t" + "\t".join(fields[15:]).encode() + b"\n"
    path.write_bytes(body)
    table, rejects = read_all(CriteoSource(path))
    assert table.num_rows == 20
    reasons = sorted(r.reason for r in rejects)
    assert reasons == sorted(
        [
            "non-numeric dense value",
            "wrong field count (10, expected 40)",
            "bad categorical value",
            "label is not 0 or 1",
            "bad encoding",
        ]
    )
    assert any("12abc" in r.text for r in rejects)


def test_missing_input_and_unreadable_gzip(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.tsv: input does not exist"):
        CriteoSource(tmp_path / "nope.tsv")
    broken = tmp_path / "broken.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage-that-is-not-deflate" * 4)
    with pytest.raises(DataError, match=r"broken\.gz: not a readable gzip file"):
        CriteoSource(broken)


def test_empty_input_yields_no_rows(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    table, rejects = read_all(CriteoSource(tmp_path / "empty"))
    assert (table is None or table.num_rows == 0) and not rejects


def write_parquet_dataset(folder: Path) -> tuple[Path, Path]:
    folder.mkdir()
    for part in range(2):
        pq.write_table(
            pa.table(
                {
                    "clicked": pa.array([1, 0, None, 1], pa.int64()),
                    "price": pa.array(["1.5", "oops", "3", None]),
                    "age": pa.array([10.0, 20.0, 30.0, 40.0]),
                    "user": pa.array([f"u{part}", "u1", "u2", "u3"]),
                    "genres": pa.array([["a", "b"], [], ["c"], None], pa.list_(pa.string())),
                    "ts": pa.array([1, 2, 3, 4], pa.int64()),
                }
            ),
            folder / f"part-{part}.parquet",
        )
    spec = folder.parent / "spec.yaml"
    spec.write_text(
        "label: clicked\ndense: [price, age]\nsparse:\n  - user\n  - {name: genres, multi_hot: true}\ntime: ts\n"
    )
    return folder, spec


def test_parquet_with_a_feature_spec(tmp_path: Path) -> None:
    folder, spec = write_parquet_dataset(tmp_path / "pq")
    source = open_source("parquet", folder, spec=spec)
    table, rejects = read_all(source)
    assert source.spec.sparse == (("user", False), ("genres", True))
    assert table.num_rows == 4  # per file: one missing label, one non-numeric price
    assert sorted(r.reason for r in rejects) == ["missing label"] * 2 + ["non-numeric dense value"] * 2
    assert table.column("price").to_pylist() == [1.5, None] * 2
    assert table.column("genres").to_pylist() == [["a", "b"], None] * 2


@pytest.mark.parametrize(
    ("spec_text", "message"),
    [
        ("label: clicked\nsparse: [missing_col]\n", "columns missing_col named in .* are missing"),
        ("dense: [age]\n", "label is missing"),
        ("label: clicked\nfeatures: [x]\n", "unknown: features"),
        ("label: clicked\nsparse: [{name: user, multi_hot: true}]\n", "'user' should be a list column"),
    ],
)
def test_parquet_spec_errors(tmp_path: Path, spec_text: str, message: str) -> None:
    folder, spec = write_parquet_dataset(tmp_path / "pq")
    spec.write_text(spec_text)
    with pytest.raises(DataError, match=message):
        open_source("parquet", folder, spec=spec)


def test_movielens_features(movielens: Path) -> None:
    table, rejects = read_all(MovieLensSource(movielens))
    ratings = len((movielens / "ratings.csv").read_text().splitlines()) - 1
    assert table.num_rows + len(rejects) == ratings
    assert {r.reason for r in rejects} <= {"unknown movie"}
    toy_story = table.filter(pa.compute.equal(table.column("movie_id"), 1)).slice(0, 1).to_pylist()[0]
    assert toy_story["release_year"] == 1995
    assert toy_story["genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert "pixar" in toy_story["movie_tags"]
    assert 0 <= toy_story["rating_hour"] < 24 and 0 <= toy_story["rating_weekday"] < 7
    labels = table.column("label").to_numpy()
    assert set(np.unique(labels)) == {0, 1} and 0.3 < labels.mean() < 0.7


def test_movielens_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="input does not exist"):
        MovieLensSource(tmp_path / "absent")


@pytest.mark.slow
def test_synthetic_is_seeded_and_reproducible() -> None:
    a, _ = read_all(SyntheticSource(rows=70_000, seed=3))
    b, _ = read_all(SyntheticSource(rows=70_000, seed=3))
    c, _ = read_all(SyntheticSource(rows=70_000, seed=4))
    assert a.equals(b)
    assert not a.column("cat_0").equals(c.column("cat_0"))
    assert a.num_rows == 70_000 and a.num_columns == 1 + 13 + 26


def test_synthetic_ids_are_zipf_distributed() -> None:
    table, _ = read_all(SyntheticSource(rows=50_000, seed=0, cardinality=1000))
    counts = np.sort(np.bincount(table.column("cat_5").to_numpy(), minlength=1000))[::-1]
    assert counts[0] > 20 * counts[100]  # heavy head: the top id is far more frequent than the 100th


@pytest.mark.slow
def test_synthetic_labels_depend_on_every_interaction_order() -> None:
    source = SyntheticSource(rows=1, seed=1)
    dense, ids, labels = source.generate(0, 200_000)
    terms = source.model.terms(np.maximum(dense, 0), ids)
    assert set(terms) == {1, 2, 3, 4}
    for order, term in terms.items():
        assert 0.5 < term.std() < 2.0, f"order {order} term is not about unit variance"
        high, low = labels[term > 0.5].mean(), labels[term < -0.5].mean()
        assert high - low > 0.1, f"labels barely depend on the order-{order} interactions"


@pytest.fixture
def grouplens_mirror(tmp_path: Path):
    """A local stand-in for the GroupLens download server: a zip of a tiny ml-latest-small and its .md5."""
    import functools
    import hashlib
    import threading
    import zipfile
    from http.server import HTTPServer, SimpleHTTPRequestHandler

    root = tmp_path / "www"
    root.mkdir()
    with zipfile.ZipFile(root / "ml-latest-small.zip", "w") as z:
        z.writestr(
            "ml-latest-small/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n2,1,2.0,964982704\n"
        )
        z.writestr("ml-latest-small/movies.csv", "movieId,title,genres\n1,Toy Story (1995),Animation|Comedy\n")
    digest = hashlib.md5((root / "ml-latest-small.zip").read_bytes()).hexdigest()
    (root / "ml-latest-small.zip.md5").write_text(f"{digest}  ml-latest-small.zip\n")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_port}/ml-latest-small.zip"
    server.shutdown()


def test_movielens_download_checks_the_published_md5(grouplens_mirror, tmp_path: Path) -> None:
    from wukong.data.sources.movielens import download_movielens

    root, url = grouplens_mirror
    folder = download_movielens(tmp_path / "cache", url)
    assert (folder / "ratings.csv").is_file()
    table, _ = read_all(MovieLensSource(folder))
    assert table.column("label").to_pylist() == [1, 0]
    assert download_movielens(tmp_path / "cache", url) == folder  # cached: no second download

    (root / "ml-latest-small.zip.md5").write_text("0" * 32 + "  ml-latest-small.zip\n")
    with pytest.raises(DataError, match="MD5 mismatch"):
        download_movielens(tmp_path / "other-cache", url)
    assert not list((tmp_path / "other-cache").glob("*.zip*"))  # nothing half-downloaded is left


def test_rows_limits_a_file_source(tmp_path: Path) -> None:
    path = write_criteo(tmp_path / "day", criteo_lines(300))
    table, _ = read_all(open_source("criteo", path, rows=120))
    assert table.num_rows == 120
    assert table.column("label").to_pylist() == read_all(CriteoSource(path))[0].column("label").to_pylist()[:120]
