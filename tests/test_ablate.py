"""symnoise-ablate: a two-setting, few-step ablation writes a report with one row per setting."""

import json

import pytest
import torch

from symnoise_trl.research import ablate


@pytest.fixture(autouse=True)
def model_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SYMNOISE_TRL_CACHE", str(tmp_path_factory.getbasetemp() / "symnoise_cache"))


def test_two_setting_ablation(tmp_path, capsys):
    ablate.main(["--output_dir", str(tmp_path), "--settings", "none,symnoise_5", "--eval_limit", "8",
                 "--max_new_tokens", "4", "--", "--max_steps", "3"])  # fmt: skip
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [r["setting"] for r in rows] == ["none", "symnoise_5"]
    for row in rows:
        assert row["n_prompts"] == 8 and row["heldout_loss"] > 0 and 0 <= row["exact_match"] <= 1
        assert (tmp_path / row["setting"] / "eval" / "alpaca_eval.json").exists()
    args = {r["setting"]: torch.load(tmp_path / r["setting"] / "training_args.bin", weights_only=False) for r in rows}
    assert args["none"].symnoise_alpha is None and args["symnoise_5"].symnoise_alpha == 5.0
    assert args["none"].max_steps == args["symnoise_5"].max_steps == 3 and args["none"].seed == args["symnoise_5"].seed
    report = (tmp_path / "report.md").read_text()
    assert "| none |" in report and "| symnoise_5 |" in report and "exact_match" in report
    assert "Report:" in capsys.readouterr().out


def test_bad_arguments_exit():
    with pytest.raises(SystemExit):
        ablate.main(["--output_dir", "x", "--settings", "none,laplace"])
    with pytest.raises(SystemExit):
        ablate.main(["--output_dir", "x", "--max_steps", "3"])  # symnoise-sft arguments go after --
