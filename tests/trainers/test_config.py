"""SymNoiseSFTConfig: TRL field style, validation in __post_init__, and the TrlParser command line."""

import pytest
from trl import TrlParser

from symnoise_trl import SymNoiseSettings, SymNoiseSFTConfig
from symnoise_trl.trainers.arguments import symnoise_settings

# Also run at the lowest versions pyproject.toml allows (scripts/test_floors.sh).
pytestmark = pytest.mark.floors


def config(**kwargs):
    return SymNoiseSFTConfig(output_dir="out", bf16=False, report_to="none", **kwargs)


def plain_values(**kwargs):
    """The same fields as another framework's config gives them (an Axolotl YAML file): the same checks."""
    neftune = kwargs.pop("neftune_noise_alpha", None)
    return symnoise_settings(kwargs, neftune)


BUILDERS = pytest.mark.parametrize("build", [config, plain_values], ids=["config", "plain_values"])


def test_defaults_turn_symnoise_off():
    c = config()
    assert (c.symnoise_alpha, c.symnoise_length, c.symnoise_seed, c.symnoise_backend) == (
        None,
        "sequence",
        None,
        "auto",
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(symnoise_alpha=-1.0), r"`symnoise_alpha` must be finite and >= 0"),
        (dict(symnoise_alpha=float("nan")), r"`symnoise_alpha` must be finite and >= 0"),
        (dict(symnoise_alpha=float("inf")), r"`symnoise_alpha` must be finite and >= 0"),
        (dict(symnoise_alpha="5"), r"`symnoise_alpha` must be a number"),
        (dict(symnoise_alpha=5.0, neftune_noise_alpha=5.0), r"`symnoise_alpha` \(5.0\) and `neftune_noise_alpha`"),
        (dict(symnoise_length="tokens"), r"`symnoise_length` must be one of \('sequence', 'padded'\)"),
        (dict(symnoise_backend="cuda"), r"`symnoise_backend` must be one of \('auto', 'triton', 'torch'\)"),
        (dict(symnoise_seed=-3), r"`symnoise_seed` must be an int in \[0, 2\*\*63\)"),
        (dict(symnoise_seed=2**63), r"`symnoise_seed` must be an int in \[0, 2\*\*63\)"),
    ],
)
@BUILDERS
def test_bad_values_raise_naming_the_field(kwargs, match, build):
    with pytest.raises(ValueError, match=match):
        build(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [dict(symnoise_two_pass=True), dict(symnoise_length="padded"), dict(symnoise_distribution="uniform"),
     dict(symnoise_seed=3), dict(symnoise_backend="torch")],
)  # fmt: skip
@BUILDERS
def test_symnoise_fields_without_alpha_raise(kwargs, build):
    (name,) = kwargs
    with pytest.raises(ValueError, match=rf"`{name}` set while `symnoise_alpha` is None \(SymNoise off\)"):
        build(**kwargs)


def test_plain_values_give_the_settings_and_name_unknown_fields():
    assert plain_values() is None  # SymNoise off
    settings = plain_values(symnoise_alpha=5, symnoise_length="padded")
    assert (settings.alpha, settings.length) == (5.0, "padded")
    with pytest.raises(ValueError, match=r"unknown SymNoise fields \['symnoise_alpah'\]"):
        plain_values(symnoise_alpah=5)


def test_settings_are_built_from_the_fields():
    assert symnoise_settings(config().symnoise_fields()) is None
    built = config(symnoise_alpha=5, symnoise_length="padded", symnoise_backend="torch", symnoise_seed=3,
                   symnoise_two_pass=True, symnoise_clean_loss_steps=10)  # fmt: skip
    fields = built.symnoise_fields()
    settings = symnoise_settings(fields)
    assert settings == SymNoiseSettings(alpha=5.0, length="padded", distribution="symmetric", backend="torch", seed=3,
                                        two_pass=True, clean_loss_steps=10)  # fmt: skip
    assert isinstance(settings.alpha, float) and settings.base_seed(42) == 3
    assert symnoise_settings(fields) == settings and built.symnoise_fields() == fields  # building writes nothing
    assert symnoise_settings(config(symnoise_alpha=5).symnoise_fields()).base_seed(42) == 42  # None: the run's seed


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(alpha=-1.0), r"^`alpha` must be finite and >= 0, got -1.0$"),
        (dict(alpha=True), r"^`alpha` must be a number >= 0, got True$"),
        (dict(alpha=1.0, length="tokens"), r"^`length` must be one of \('sequence', 'padded'\), got 'tokens'$"),
        (dict(alpha=1.0, distribution="laplace"), r"^`distribution` must be one of \('symmetric', "),
        (dict(alpha=1.0, backend="cuda"), r"^`backend` must be one of \('auto', 'triton', 'torch'\), got 'cuda'$"),
    ],
)
def test_settings_validate_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SymNoiseSettings(**kwargs)


def test_neftune_alone_is_allowed():
    assert config(neftune_noise_alpha=5.0).neftune_noise_alpha == 5.0


def test_trl_parser_help_and_parsing(capsys):
    parser = TrlParser((SymNoiseSFTConfig,))
    help_text = " ".join(parser.format_help().split())
    for flag in ("--symnoise_alpha", "--symnoise_length", "--symnoise_seed", "--symnoise_backend"):
        assert flag in help_text
    assert "SymNoise strength, read like `neftune_noise_alpha`" in help_text
    assert "{sequence,padded}" in help_text
    (args,) = parser.parse_args_and_config(
        ["--output_dir", "out", "--bf16", "false", "--symnoise_alpha", "5", "--symnoise_length", "padded"]
    )
    assert args.symnoise_alpha == 5.0 and args.symnoise_length == "padded"
    with pytest.raises(SystemExit):
        parser.parse_args_and_config(["--output_dir", "out", "--symnoise_length", "tokens"])
    assert "invalid choice" in capsys.readouterr().err
