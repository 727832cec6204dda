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
    with pytest.raises(SystemExit):
        ablate.main(["--output_dir", "x", "--sensitivity_alphas", "0,5"])


def test_equal_compute_doubles_the_batch_and_the_report_has_the_sensitivity(tmp_path):
    # 2,000 examples, 0.01 epoch: 5 steps of 4; doubled, 5 steps of 8 (0.02 epoch)
    ablate.main(["--output_dir", str(tmp_path), "--settings", "none,neftune_5_equal_compute", "--seeds", "0",
                 "--eval_limit", "4", "--max_new_tokens", "2", "--sensitivity_alphas", "1,5", "--evaluate_base", "--",
                 "--num_train_epochs", "0.01", "--per_device_train_batch_size", "4"])  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    runs = {r["setting"]: r for r in results["runs"]}
    assert list(runs) == ["none", "neftune_5_equal_compute", ablate.UNTRAINED]
    plain = torch.load(tmp_path / "none" / "seed0" / "training_args.bin", weights_only=False)
    doubled = torch.load(tmp_path / "neftune_5_equal_compute" / "seed0" / "training_args.bin", weights_only=False)
    assert (plain.per_device_train_batch_size, doubled.per_device_train_batch_size) == (4, 8)
    assert (plain.neftune_noise_alpha, doubled.neftune_noise_alpha) == (None, 5.0)
    assert runs["none"]["steps"] == runs["neftune_5_equal_compute"]["steps"] == 5  # as many steps, twice the batch
    for run in runs.values():  # each run's evaluation, flattened: its own metrics.json holds the nested form
        nested = json.loads((tmp_path / run["setting"] / ("eval" if run["setting"] == ablate.UNTRAINED else
                                                           "seed0/eval") / "metrics.json").read_text())  # fmt: skip
        assert run["rademacher_curvature_token_5"] == nested["sensitivity"]["rademacher"]["5"]["curvature_token"]
        assert run["uniform_first_order_sequence_1"] == nested["sensitivity"]["uniform"]["1"]["first_order_sequence"]
        assert run["clean_loss_token"] == pytest.approx(run["heldout_loss"], rel=1e-6)
        assert "sensitivity" not in run  # flattened, not both
    assert "train_loss" not in runs[ablate.UNTRAINED] and runs[ablate.UNTRAINED]["model"] == "tiny-llama-v1"
    report = (tmp_path / "report.md").read_text()
    assert "## Sensitivity" in report and "| untrained | 1 |" in report and "rademacher_first_order_token_5" in report
    paired = report.split("## Against `none`, seed by seed")[1]
    assert "| neftune_5_equal_compute | 1 |" in paired and "[" in paired


def test_the_doubled_batch_doubles_the_epochs_too(tmp_path):
    # symnoise-sft's own parser reads the arguments: "--name=value", dashes and the last value given all count.
    training, model = ablate.resolve_training(
        ["--per-device-train-batch-size", "8", "--num_train_epochs=3", "--per_device_train_batch_size", "5"], tmp_path
    )
    assert (training.per_device_train_batch_size, training.num_train_epochs) == (5, 3.0)
    assert model.model_name_or_path is None  # the built-in tiny model
    assert ablate.setting_arguments("neftune_5_equal_compute", training)[2:] == [
        "--per_device_train_batch_size", "10", "--num_train_epochs", "6.0"]  # fmt: skip
    assert ablate.setting_arguments("neftune_5", training) == ["--neftune_noise_alpha", "5"]
    assert "neftune_5_equal_compute" not in ablate.TABLE_4  # the default settings are the paper's


def test_bad_evaluation_options_exit_before_training(tmp_path, capsys):
    for argv, expected in ((["--sensitivity_alphas", "5,5"], "--sensitivity_alphas must be distinct"),
                           (["--eval_max_length", "1"], "--max_length must be an int >= 2"),
                           (["--eval_prompts", str(tmp_path / "none.jsonl")], "none.jsonl"),
                           (["--", "--per_device_train_batch_size", "0"], "per_device_train_batch_size")):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            ablate.main(["--output_dir", str(tmp_path / "out"), *argv])
        assert exit_info.value.code == 2 and expected in capsys.readouterr().err, argv
        assert not (tmp_path / "out").exists()


def test_paired_differences_are_taken_seed_by_seed():
    runs = [{"setting": "none", "seed": 0, "loss": 1.0}, {"setting": "none", "seed": 1, "loss": 2.0},
            {"setting": "symnoise_5", "seed": 1, "loss": 1.5}, {"setting": "symnoise_5", "seed": 0, "loss": 1.25},
            {"setting": "neftune_5", "seed": 7, "loss": 0.0},  # no `none` run with seed 7: nothing to pair
            {"setting": ablate.UNTRAINED, "seed": 0, "loss": 9.0}]  # fmt: skip
    # seed 0: +0.25, seed 1: -0.5 -> mean -0.125, sd 0.53; one of two below zero
    assert ablate.paired_differences(runs, ["loss"]) == [{"setting": "symnoise_5", "seeds": 2,
                                                          "loss": "-0.125 ± 0.53 [1/2]"}]  # fmt: skip
    assert ablate.paired_differences([r for r in runs if r["setting"] != "none"], ["loss"]) == []
