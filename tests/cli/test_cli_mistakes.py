"""A newcomer's mistakes with `symnoise-sft`: each is one line that names the option or the file (and the 1-based line
for bad data) and says what to do, with exit code 2, before the model loads, and nothing is written."""

import json
import os
import subprocess
import sys

import pyarrow
import pyarrow.parquet
import pytest
import torch
from safetensors.torch import save_file

from symnoise_trl.cli.command import main

# Also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh).
pytestmark = pytest.mark.floors

ROWS = [{"prompt": f"What is {i} + 1?", "completion": f" {i + 1}"} for i in range(4)]


def jsonl(path, rows=ROWS):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def model_folder(folder):
    """A folder as save_pretrained leaves it (a config and safetensors weights; tiny, not a loadable model)."""
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    save_file({"weight": torch.zeros(64, 8)}, str(folder / "model.safetensors"))
    return folder


def mistakes(tmp_path):
    """(name, argv, the message's expected text) for every case, made in tmp_path."""
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_text(json.dumps(ROWS[0]) + "\n" + json.dumps(ROWS[1]) + "\n" + '{"prompt": "x", "completion"\n')
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(
        json.dumps(ROWS[0]).encode() + b"\n" + '{"prompt": "caf\xe9", "completion": " 1"}\n'.encode("latin-1")
    )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    no_data = tmp_path / "no_data"
    (no_data / "notes").mkdir(parents=True)
    (no_data / "README.txt").write_text("nothing here")
    no_config = tmp_path / "model_without_config"
    no_config.mkdir()
    (no_config / "model.safetensors").write_bytes(b"")
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_text('prompt,completion\nWhat is 1 + 1?, 2\n"a,b\n')
    truncated, corrupt = model_folder(tmp_path / "truncated_model"), model_folder(tmp_path / "corrupt_model")
    weights = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) - 100])  # a download cut short
    (corrupt / "model.safetensors").write_bytes(weights[:8] + b"\xff" * (len(weights) - 8))
    bad_parquet = tmp_path / "bad.parquet"
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(ROWS), bad_parquet)
    bad_parquet.write_bytes(bad_parquet.read_bytes()[:-20])
    bad_arrow = tmp_path / "bad.arrow"
    bad_arrow.write_bytes(b"ARROW1" + b"\x00" * 10)
    partial = tmp_path / "partial" / "checkpoint-16"  # what a kill -9 during transformers' own save leaves
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{}")
    (partial / "model.safetensors").write_bytes(weights[:100])
    good = str(jsonl(tmp_path / "good.jsonl"))
    return [
        ("malformed line", ["--dataset_name", str(bad_line)], f"{bad_line}:3: not valid JSON"),
        ("latin-1 file", ["--dataset_name", str(latin)], f"{latin}:2: not UTF-8 text (byte 0xE9)"),
        ("missing data file", ["--dataset_name", str(tmp_path / "nope.jsonl")], "nope.jsonl: no such file or folder"),
        ("empty data file", ["--dataset_name", str(empty)], "empty.jsonl is empty"),
        ("folder without data", ["--dataset_name", str(no_data)], "no_data: the folder has no data files"),
        ("missing model folder", ["--model_name_or_path", str(tmp_path / "no" / "such" / "model")],
         "/no/such/model: no such folder"),
        ("model folder without config", ["--model_name_or_path", str(no_config)], "the folder has no config.json"),
        ("uncached Hub model offline", ["--model_name_or_path", "someone/not-downloaded"],
         "not in the local Hub cache while the Hub is offline"),
        ("output_dir is a file", ["--output_dir", str(a_file)], f"--output_dir {a_file} is a file, not a folder"),
        ("batch size 0", ["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be a positive"),
        ("accumulation 0", ["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps must be a positive"),
        ("max_steps 0", ["--max_steps", "0"], "--max_steps must be a positive number of steps, or -1"),
        ("max_steps -5", ["--max_steps", "-5"], "--max_steps must be a positive number of steps, or -1"),
        ("epochs 0", ["--num_train_epochs", "0"], "--num_train_epochs must be > 0"),
        ("max_length 0", ["--max_length", "0"], "--max_length must be a positive number of tokens"),
        ("logging_steps 0", ["--logging_steps", "0"], "requires non-zero --logging_steps"),  # transformers' own line
        ("negative learning rate", ["--learning_rate", "-0.1"], "--learning_rate must be >= 0"),
        ("unclosed CSV quote", ["--dataset_name", str(unclosed)], f"{unclosed}:3: a quoted field is never closed"),
        ("truncated weights", ["--model_name_or_path", str(truncated)], "model.safetensors is truncated"),
        ("corrupt weights", ["--model_name_or_path", str(corrupt)], "model.safetensors is corrupt"),
        ("corrupt Parquet", ["--dataset_name", str(bad_parquet)], f"{bad_parquet}: not a readable Parquet file"),
        ("corrupt Arrow", ["--dataset_name", str(bad_arrow)], f"{bad_arrow}: not a readable Arrow file"),
        ("incomplete checkpoint", ["--resume_from_checkpoint", str(partial)],
         f"{partial}: not a complete checkpoint (no trainer_state.json)"),
    ], good  # fmt: skip


CASES = ["malformed line", "latin-1 file", "missing data file", "empty data file", "folder without data",
         "missing model folder", "model folder without config", "uncached Hub model offline", "output_dir is a file",
         "batch size 0", "accumulation 0", "max_steps 0", "max_steps -5", "epochs 0", "max_length 0",
         "logging_steps 0", "negative learning rate", "unclosed CSV quote", "truncated weights", "corrupt weights",
         "corrupt Parquet", "corrupt Arrow", "incomplete checkpoint"]  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_each_mistake_is_one_line_with_exit_code_2_before_anything_loads(tmp_path, capsys, monkeypatch, case):
    cases, good = mistakes(tmp_path)
    assert [name for name, _, _ in cases] == CASES
    name, argv, expected = cases[CASES.index(case)]
    cache = tmp_path / "cache"
    monkeypatch.setenv("SYMNOISE_TRL_CACHE", str(cache))  # the built-in model would be built here if it loaded
    out = tmp_path / "out"
    base = ["--output_dir", str(out), "--dataset_name", good, "--bf16", "false", "--symnoise_alpha", "5"]
    with pytest.raises(SystemExit) as exit_info:
        main([*base, *argv])
    assert exit_info.value.code == 2, name
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and lines[1] == "(`symnoise-sft --help` lists the options)", (name, lines)
    assert lines[0].startswith("symnoise-sft: error: ") and expected in lines[0], (name, lines[0])
    assert not cache.exists(), f"{name}: the model was built or loaded before the mistake was reported"
    assert not out.exists(), f"{name}: the output folder was written"


def test_a_real_process_prints_the_line_and_exits_2(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ROWS[0]) + "\n{oops}\n")
    command = [sys.executable, "-m", "symnoise_trl", "--dataset_name", str(bad), "--output_dir", str(tmp_path / "o"),
               "--bf16", "false"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SYMNOISE_TRL_CACHE": str(tmp_path / "cache")})  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"symnoise-sft: error: {bad}:2: not valid JSON (Expecting property name enclosed in double quotes at column "
        "2); each line must be one JSON object",
        "(`symnoise-sft --help` lists the options)",
    ]


def test_a_missing_folder_under_a_local_folder_is_not_taken_for_a_hub_name(tmp_path, monkeypatch):
    from symnoise_trl.cli.preflight import check_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(ValueError, match=r"^--model_name_or_path models/typo: no such folder$"):
        check_model("models/typo", offline=False)
    check_model("some-org/some-model", offline=False)  # a Hub name: left to the Hub client when online
