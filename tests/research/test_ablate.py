"""symnoise-ablate: a two-setting, few-step ablation writes a report with one row per setting."""

import json

import pytest
import torch

from symnoise_trl.research import ablate


@pytest.fixture(autouse=True)
def model_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SYMNOISE_TRL_CACHE", str(tmp_path_factory.getbasetemp() / "symnoise_cache"))


def test_two_settings_two_seeds(tmp_path, capsys):
    ablate.main(["--output_dir", str(tmp_path), "--settings", "none,symnoise_5", "--seeds", "0,1", "--eval_limit", "8",
                 "--max_new_tokens", "4", "--", "--max_steps", "3"])  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    runs = results["runs"]
    expected = [("none", 0), ("none", 1), ("symnoise_5", 0), ("symnoise_5", 1)]
    assert [(r["setting"], r["seed"]) for r in runs] == expected
    for run in runs:
        assert run["n_prompts"] == 8 and run["heldout_loss"] > 0 and 0 <= run["exact_match"] <= 1
        run_dir = tmp_path / run["setting"] / f"seed{run['seed']}"
        assert (run_dir / "eval" / "alpaca_eval.json").exists()
        args = torch.load(run_dir / "training_args.bin", weights_only=False)
        assert args.seed == run["seed"] and args.max_steps == 3
        assert args.symnoise_alpha == (None if run["setting"] == "none" else 5.0)
    # The summary is the mean and sample standard deviation of the runs, computed here independently.
    for row in results["summary"]:
        losses = [r["heldout_loss"] for r in runs if r["setting"] == row["setting"]]
        assert row["seeds"] == 2
        assert row["heldout_loss"] == pytest.approx((losses[0] + losses[1]) / 2)
        assert row["heldout_loss_sd"] == pytest.approx(abs(losses[0] - losses[1]) / 2**0.5)
    assert results["summary"][0]["heldout_loss_sd"] > 0  # two seeds train differently
    report = (tmp_path / "report.md").read_text()
    assert "| none | 2 |" in report and "| symnoise_5 | 2 |" in report and " ± " in report
    assert "Report:" in capsys.readouterr().out


def test_bad_arguments_exit():
    with pytest.raises(SystemExit):
        ablate.main(["--output_dir", "x", "--settings", "none,laplace"])
    with pytest.raises(SystemExit):
        ablate.main(["--output_dir", "x", "--max_steps", "3"])  # symnoise-sft arguments go after --
    with pytest.raises(SystemExit):
        ablate.main(["--output_dir", "x", "--seeds", "0,one"])
