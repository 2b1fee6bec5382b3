"""Package versions behind each row: a row whose key packages differ from the rest of its table is marked,
so a delta that is partly an upstream release (a new transformers, a new mteb scorer) is not read as an effect."""

from __future__ import annotations

from collections import Counter

from embedforge.run_record import PACKAGES

# The packages whose release can move a score; embedforge's own version is the git sha's job.
KEY_PACKAGES = tuple(p for p in PACKAGES if p != "embedforge")
MARK = "†"


def record_versions(record: dict) -> dict[str, str]:
    """The key package versions a run record holds (absent or null ones left out)."""
    versions = record.get("versions") or {}
    return {p: str(versions[p]) for p in KEY_PACKAGES if versions.get(p) is not None}


def merge_versions(row_versions: dict[str, str], record: dict) -> None:
    """Add one more record's versions to a row's (training and its evaluations): a package seen at two
    versions within the row reads 'a / b', which then differs from every single-version row."""
    add_versions(row_versions, record_versions(record))


def add_versions(row_versions: dict[str, str], versions: dict[str, str]) -> None:
    """Merge `versions` (each maybe already 'a / b') into a row's, as merge_versions does for a record."""
    for package, found in versions.items():
        for version in found.split(" / "):
            old = row_versions.get(package)
            if old is None:
                row_versions[package] = version
            elif version not in old.split(" / "):
                row_versions[package] = " / ".join(sorted([*old.split(" / "), version]))


def version_differences(rows: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """{row key: ["<package> <its version> (others: <the table's usual version>)", ...]} for every row whose
    key package versions differ from the table's most common one. Where no version is most common (a tie),
    every row with that package is marked. Rows without a version for a package are not compared on it."""
    out: dict[str, list[str]] = {}
    for package in KEY_PACKAGES:
        seen = {key: versions[package] for key, versions in rows.items() if package in versions}
        counts = Counter(seen.values())
        if len(counts) < 2:
            continue
        (top, n), (_, n2) = counts.most_common(2)
        usual = top if n > n2 else None
        for key, version in seen.items():
            if version != usual:
                others = usual or ", ".join(sorted(v for v in counts if v != version))
                out.setdefault(key, []).append(f"{package} {version} (others: {others})")
    return out
