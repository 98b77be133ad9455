import pytest

from edge_aae.core.errors import ConfigError, UsageError
from edge_aae.train.config import TrainConfig, auto_latent_dim, load_train_config


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "train.toml"
    p.write_text("window_len = 16\nepochz = 3\n")
    with pytest.raises(ConfigError, match=r"train.toml.*epochz"):
        load_train_config(p)


def test_bad_value_is_named(tmp_path):
    p = tmp_path / "train.toml"
    p.write_text("[train]\narch = 'lstm'\n")
    with pytest.raises(ConfigError, match="arch must be one of conv, mlp"):
        load_train_config(p)


def test_valid_file_under_train_table(tmp_path):
    p = tmp_path / "train.toml"
    p.write_text("[train]\nwindow_len = 16\nprior = 'mixture'\n")
    cfg = load_train_config(p)
    assert cfg.window_len == 16
    assert cfg.prior == "mixture"


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_train_config(tmp_path / "nope.toml")


@pytest.mark.parametrize(("field", "value"), [("target_far", 1.5), ("epochs", 0), ("threshold", "max")])
def test_invalid_values(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


def test_auto_latent_dim_is_smaller_than_the_channel_count():
    assert auto_latent_dim(8) == 4
    assert auto_latent_dim(19) == 8
    assert auto_latent_dim(2) == 2
