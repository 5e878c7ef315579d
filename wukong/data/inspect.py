"""``wukong data inspect``: a dataset's manifest as a readable summary."""

from __future__ import annotations

from tabulate import tabulate

from wukong.data.manifest import SPLITS, Manifest


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _lineage(manifest: Manifest) -> list[str]:
    """The partition the dataset holds and the vocabulary it extends, where it says."""
    lines = [f"partition {manifest.partition}"] if manifest.partition else []
    extends = manifest.preprocessing.get("vocabulary_extends")
    if extends:
        changes = extends.get("features", {}).values()
        kept, added = sum(c["kept"] for c in changes), sum(c["added"] for c in changes)
        lines.append(f"vocabulary extends {extends['from']}: {kept:,} ids kept, {added:,} new values added after them")
    return lines


def summarize(manifest: Manifest, uri: str) -> str:
    source = manifest.source
    lines = [
        f"dataset   {uri}",
        f"created   {manifest.created} by wukong {manifest.tool_version} (run {manifest.run_id})",
        f"source    {source.get('name')} {source.get('input', '')}".rstrip(),
        f"rows      {source.get('rows_read', 0):,} read, {source.get('rows_rejected', 0):,} rejected"
        + (
            f" ({', '.join(f'{k}: {v}' for k, v in source.get('rejects', {}).items())})"
            if source.get("rejects")
            else ""
        ),
        f"split     {manifest.preprocessing.get('split')}",
        f"encoding  {manifest.preprocessing.get('categorical')}; dense {manifest.preprocessing.get('dense')}",
        *_lineage(manifest),
        "",
    ]
    label_mean = manifest.statistics.get("label_mean", {})
    oracle = manifest.statistics.get("oracle", {})  # sources that know each row's true probability
    rows = [
        [
            name,
            f"{manifest.rows(name):,}",
            len(manifest.splits.get(name, [])),
            _size(manifest.bytes(name)),
            f"{label_mean[name]:.4f}" if label_mean.get(name) is not None else "-",
            *([f"{oracle[name]['logloss']:.4f}" if name in oracle else "-"] if oracle else []),
        ]
        for name in SPLITS
        if name in manifest.splits
    ]
    headers = ["split", "rows", "shards", "bytes", "label mean", *(["oracle logloss"] if oracle else [])]
    lines.append(tabulate(rows, headers=headers, disable_numparse=True))
    lines.append("")
    features = [["label", "label", "", ""]]
    dense_stats = manifest.statistics.get("dense", {})
    features += [
        [
            name,
            "dense",
            "",
            f"mean {dense_stats[name]['mean']:.3f} std {dense_stats[name]['std']:.3f}" if name in dense_stats else "",
        ]
        for name in manifest.schema.dense
    ]
    features += [
        [f.name, "sparse multi-hot" if f.multi_hot else "sparse", f"{f.cardinality:,}", ""]
        for f in manifest.schema.sparse
    ]
    lines.append(
        tabulate(features, headers=["feature", "kind", "cardinality", "train statistics"], disable_numparse=True)
    )
    return "\n".join(lines)
