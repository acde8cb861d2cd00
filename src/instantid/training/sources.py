"""What `prepare-data` reads: image-caption pairs from a folder or a JSONL/CSV table.

Accepted sources:
- a folder of images, each with its caption in a `.txt` of the same name beside it (searched recursively);
- a folder holding `metadata.jsonl` or `metadata.csv` (Hugging Face imagefolder convention);
- a `.jsonl` or `.csv` file. Rows name the image (`file_name`, `image`, `path` or `image_path`; relative
  paths are relative to the table) and the caption (`caption` or `text`).

Rows that cannot become an item are returned as problems (with a reason), never raised: one bad row
must not stop a million-image run. WebDataset shards are not read (convert them to a folder first).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import TrainingDataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
TABLE_NAMES = ("metadata.jsonl", "metadata.csv")
IMAGE_KEYS = ("file_name", "image", "path", "image_path")
CAPTION_KEYS = ("caption", "text")
IDENTITY_KEYS = ("identity", "person", "person_id")  # optional: who is in the photo (paired references)

# Why an item was left out; the report counts each (prepare.py adds the reasons found while analysing).
UNREADABLE_ROW = "unreadable_row"
MISSING_CAPTION = "missing_caption"
MISSING_IMAGE = "missing_image"
DUPLICATE = "duplicate"


@dataclass(frozen=True)
class SourceItem:
    """One image-caption pair. `id` is stable across runs (it names the item's files and makes reruns resume)."""

    id: str
    image: Path
    caption: str
    identity: str | None = None  # person label when the source has one


@dataclass(frozen=True)
class SourceProblem:
    where: str  # file, or file:line for a table row
    reason: str
    detail: str = ""


def item_id(relative_image: str, caption: str) -> str:
    return hashlib.sha1(f"{relative_image}\n{caption}".encode("utf-8")).hexdigest()[:16]


def read_source(src: str | os.PathLike, identity_from_folder: bool = False
                ) -> tuple[list[SourceItem], list[SourceProblem]]:
    """Items and problems of a source folder or table, in a stable order. `identity_from_folder`: a folder of
    images holds one sub-folder per person, whose name is the identity label."""
    src = Path(src)
    if src.is_file():
        items, problems = _read_table(src)
    elif src.is_dir():
        table = next((src / name for name in TABLE_NAMES if (src / name).is_file()), None)
        items, problems = _read_table(table) if table else _read_folder(src, identity_from_folder)
    else:
        raise TrainingDataError(f"data source '{src}' does not exist; pass a folder of images with .txt captions, "
                                "or a .jsonl/.csv table of file_name + caption")
    return _drop_duplicates(items, problems)


def _read_folder(root: Path, identity_from_folder: bool = False) -> tuple[list[SourceItem], list[SourceProblem]]:
    items, problems = [], []
    for image in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        relative = image.relative_to(root).as_posix()
        caption_file = image.with_suffix(".txt")
        caption = caption_file.read_text(encoding="utf-8", errors="replace").strip() if caption_file.is_file() else ""
        if not caption:
            problems.append(SourceProblem(relative, MISSING_CAPTION, f"no text in {caption_file.name}"))
            continue
        person = image.parent.relative_to(root).as_posix() if identity_from_folder else None
        items.append(SourceItem(item_id(relative, caption), image, caption, person if person not in ("", ".") else None))
    return items, problems


def _read_table(table: Path) -> tuple[list[SourceItem], list[SourceProblem]]:
    suffix = table.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise TrainingDataError(f"data source '{table}' is a {suffix or 'suffix-less'} file; pass a .jsonl or .csv "
                                "table, or a folder of images with .txt captions")
    items, problems = [], []
    for where, row, error in (_jsonl_rows(table) if suffix == ".jsonl" else _csv_rows(table)):
        if error:
            problems.append(SourceProblem(where, UNREADABLE_ROW, error))
            continue
        item_or_problem = _row_to_item(row, table.parent, where)
        (items if isinstance(item_or_problem, SourceItem) else problems).append(item_or_problem)
    return items, problems


def _jsonl_rows(table: Path):
    with table.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{table.name}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                yield where, None, f"not JSON ({err.msg})"
                continue
            yield (where, row, None) if isinstance(row, dict) else (where, None, "not a JSON object")


def _csv_rows(table: Path):
    with table.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.DictReader(handle)
        for number, row in enumerate(reader, 2):  # line 1 is the header
            where = f"{table.name}:{number}"
            if None in row or any(value is None for value in row.values()):
                yield where, None, "wrong number of columns"
            else:
                yield where, row, None


def _row_to_item(row: dict, base: Path, where: str) -> SourceItem | SourceProblem:
    image = next((row[k] for k in IMAGE_KEYS if isinstance(row.get(k), str) and row[k].strip()), None)
    if image is None:
        return SourceProblem(where, UNREADABLE_ROW, f"no image path in any of the columns {', '.join(IMAGE_KEYS)}")
    caption = next((row[k] for k in CAPTION_KEYS if isinstance(row.get(k), str)), "").strip()
    if not caption:
        return SourceProblem(where, MISSING_CAPTION, f"no caption for {image}")
    path = Path(image.strip()).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        return SourceProblem(where, MISSING_IMAGE, f"{path} does not exist")
    identity = next((str(row[k]).strip() for k in IDENTITY_KEYS if row.get(k) not in (None, "")), None)
    return SourceItem(item_id(image.strip(), caption), path, caption, identity)


def _drop_duplicates(items: list[SourceItem], problems: list[SourceProblem]):
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.id in seen:
            problems.append(SourceProblem(str(item.image), DUPLICATE, "same image and caption listed twice"))
            continue
        seen.add(item.id)
        unique.append(item)
    return unique, problems
