"""Your own data: local files of every supported type load, and bad data gets one clear error before training
(from the functions, and from `symnoise-sft` as a one-line message with exit code 2)."""

import json
import re

import pytest
from datasets import Dataset

from symnoise_trl.cli.command import run
from symnoise_trl.cli.data import DataError, check_sft_dataset, load_sft_dataset

# Also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh).
pytestmark = pytest.mark.floors

ROWS = [{"prompt": "What is 1 + 2?", "completion": " 3"}, {"prompt": "Reverse abc", "completion": " cba"}]


@pytest.fixture(autouse=True)
def model_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SYMNOISE_TRL_CACHE", str(tmp_path_factory.getbasetemp() / "symnoise_cache"))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_local_files_load(tmp_path, suffix):
    path = tmp_path / f"train{suffix}"
    data = Dataset.from_list(ROWS)
    if suffix == ".jsonl":
        write_jsonl(path, ROWS)
    elif suffix == ".json":
        path.write_text(json.dumps(ROWS))
    elif suffix == ".csv":
        data.to_csv(path, index=False)
    else:
        data.to_parquet(path)
    train = load_sft_dataset(str(path))["train"]
    assert train.to_list() == ROWS
    check_sft_dataset(train, str(path))


def test_a_folder_loads(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", ROWS)
    assert load_sft_dataset(str(tmp_path))["train"].to_list() == ROWS


def test_conversational_and_text_formats_pass():
    messages = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]]
    check_sft_dataset(Dataset.from_dict({"messages": messages}), "chat")
    check_sft_dataset(Dataset.from_dict({"text": ["a document"]}), "lm")
    check_sft_dataset(Dataset.from_dict({"body": ["a document"]}), "lm", text_field="body")
    check_sft_dataset(Dataset.from_dict({"prompt": [messages[0][:1]], "completion": [messages[0][1:]]}), "chat-pc")


@pytest.mark.parametrize(
    "content, match",
    [
        ("", r"empty\.jsonl is empty: there are no examples to train on"),
        ("\n\n", r"is empty: there are no examples to train on"),
        ('{"prompt": "a", "completion": " b"}\n{"prompt": "c"}\n', r"row 2 has no 'completion'"),
        ('{"prompt": "a", "completion": " b"}\n{"prompt": "c", "completion": 5}\n',
         r"'completion' must be text or a list of messages .*, but row 2 holds 5 \(int\)"),
        ('{"instruction": "a", "output": " b"}\n',
         r"has the columns \['instruction', 'output'\]; SFT needs 'prompt' and 'completion' \(prompt-completion\), "
         r"'messages' \(conversational\), or 'text'"),
        ('{"prompt": "a"}\n', r"has no 'completion' column and the columns \['prompt'\]"),
    ],
)  # fmt: skip
def test_bad_files_name_the_file_and_the_problem(tmp_path, content, match):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=match) as error:
        check_sft_dataset(load_sft_dataset(str(path))["train"], str(path))
    assert str(path) in str(error.value)


def test_paths_that_are_not_there_or_not_data():
    with pytest.raises(DataError, match=r"no/such/train\.jsonl: no such file or folder"):
        load_sft_dataset("no/such/train.jsonl")
    with pytest.raises(DataError, match=r"must end in \.json, \.jsonl, \.csv, \.parquet"):
        load_sft_dataset(__file__)


def test_an_empty_dataset():
    with pytest.raises(DataError, match="my data has no examples"):
        check_sft_dataset(Dataset.from_dict({"prompt": [], "completion": []}), "my data")


def test_messages_must_be_lists():
    with pytest.raises(DataError, match=r"'messages' must be a list of messages .*, but row 1 holds 'hi' \(str\)"):
        check_sft_dataset(Dataset.from_dict({"messages": ["hi"]}), "chat")


def cli_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    progress = re.compile(r"\[\d\d:\d\d")  # tqdm's bars (datasets, weight loading) print elapsed time
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and not progress.search(line)]
    assert len(lines) <= 2, err  # the message and a pointer to --help (beside datasets' progress bars), no usage
    return err


def test_the_cli_trains_on_a_local_file(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", ROWS * 8)
    trainer = run(["--dataset_name", str(path), "--symnoise_alpha", "5", "--max_steps", "2", "--bf16", "false",
                   "--per_device_train_batch_size", "4", "--report_to", "none", "--disable_tqdm", "true",
                   "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert trainer.state.global_step == 2 and len(trainer.train_dataset) == 16
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_the_cli_reports_bad_data_in_one_line(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "completion": " b"}\n{"prompt": "c"}\n')
    err = cli_error(capsys, ["--dataset_name", str(path), "--bf16", "false", "--output_dir", str(tmp_path)])
    assert f"symnoise-sft: error: {path} (split 'train'): row 2 has no 'completion'" in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    err = cli_error(capsys, ["--dataset_name", str(empty), "--bf16", "false", "--output_dir", str(tmp_path)])
    assert "empty.jsonl is empty" in err


def test_a_max_length_that_drops_every_example(tmp_path, capsys):
    path = write_jsonl(tmp_path / "mine.jsonl", ROWS * 4)
    err = cli_error(capsys, ["--dataset_name", str(path), "--max_length", "1", "--bf16", "false", "--report_to",
                             "none", "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert "all 8 training examples were dropped: truncated to max_length=1 tokens" in err


def test_data_file_checks_name_the_line(tmp_path):
    from symnoise_trl.cli.data import check_data_file

    good = [json.dumps({"prompt": "a\u2028b", "completion": " c"}), json.dumps({"prompt": "x", "completion": " y"})]
    lines = tmp_path / "lines.jsonl"
    lines.write_text("\n".join(good) + "\n", encoding="utf-8")
    check_data_file(lines, "lines.jsonl")  # U+2028 inside a string is not a line break of JSON Lines
    as_json = tmp_path / "lines.json"
    as_json.write_text("\n".join(good) + "\n")
    check_data_file(as_json, "lines.json")  # a .json file in JSON Lines form
    document = tmp_path / "doc.json"
    document.write_text('[\n  {"prompt": "a", "completion": " b"},\n  {"prompt": "c", "completion": " d"},\n]\n')
    with pytest.raises(DataError, match=r"^doc\.json:4: not valid JSON \(Expecting value"):  # the trailing comma
        check_data_file(document, "doc.json")
    pretty = tmp_path / "pretty.json"
    pretty.write_text('{\n  "prompt": ["a"],\n  "completion": [" b"]\n}\n')
    check_data_file(pretty, "pretty.json")  # one object over several lines
    csv = tmp_path / "rows.csv"
    csv.write_bytes(b"prompt,completion\nok, 1\ncaf\xe9, 2\n")
    with pytest.raises(DataError, match=r"^rows\.csv:3: not UTF-8 text \(byte 0xE9\)"):
        check_data_file(csv, "rows.csv")
