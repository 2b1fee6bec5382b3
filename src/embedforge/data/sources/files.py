"""Finding data files: names, globs and folders, relative to the working directory, then the repository."""

from __future__ import annotations

import glob
from pathlib import Path

from embedforge.data.jsonl import DataFileError
from embedforge.paths import REPO_ROOT

# Row files a public-dataset source reads from disk (the layouts the hub hosts, downloaded).
ROW_FILE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".parquet")


def expand_files(patterns, key: str) -> list[Path]:
    """Resolve file names and globs (relative to the working directory, then the repository)."""
    if isinstance(patterns, (str, Path)):
        patterns = [patterns]
    files: list[Path] = []
    for pattern in patterns:
        pattern = str(pattern)
        matches = sorted(glob.glob(pattern)) or sorted(glob.glob(str(REPO_ROOT / pattern)))
        if not matches:
            raise DataFileError(f"{key}: no data file matches '{pattern}'")
        files += [Path(m) for m in matches]
    return files


def resolve_path(path: str | Path) -> Path:
    """A path as given if it exists, else relative to the repository (like expand_files)."""
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    return REPO_ROOT / path if (REPO_ROOT / path).exists() else path


def is_row_file(path: Path) -> bool:
    return path.is_file() and any(path.name.endswith(suffix) for suffix in ROW_FILE_SUFFIXES)


def row_files(path_or_glob: str, key: str, split: str | None = None, config: str | None = None) -> list[Path]:
    """The row files of a local copy of a dataset: one file, a glob, or a folder (searched
    recursively). In a folder holding several subsets or splits (as a hub snapshot does), files
    under a folder named `config` and files named after `split` are preferred when there are any."""
    base = resolve_path(path_or_glob)
    if base.is_dir():
        found = sorted(p for p in base.rglob("*") if is_row_file(p))
        if config:
            in_config = [p for p in found if config in p.relative_to(base).parts[:-1]]
            found = in_config or found
        if split:
            in_split = [p for p in found if p.name.startswith((f"{split}.", f"{split}-", f"{split}_"))
                        or split in p.relative_to(base).parts[:-1]]
            found = in_split or found
    else:
        found = [p for p in expand_files(path_or_glob, key) if is_row_file(p)]
    if not found:
        raise DataFileError(f"{key}: no row files ({', '.join(ROW_FILE_SUFFIXES)}) at '{path_or_glob}'")
    return found
