"""Configuration: precedence command line > environment > file > defaults, masking, clear errors."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest

from pipeline.config import Config, default_config_path, load_config, mask_url
from pipeline.errors import ConfigError

SLACK = "https://hooks.slack.com/services/T0AAAA111/B0BBBB222/abcDEF123ghiJKL456mno"
GENERIC = "http://user:hunter2@alerts.example.org/notify?token=zzTOPsecret99&channel=ops"

FILE = f"""
[output]
root = "out-from-file"

[monitor]
aois = ["tartus-naval-facility", "khmeimim"]
source = "earth-search"
since = 2024-09-01
until = 2025-03-31
reference = [2024-03-01, 2024-08-31]
confirm_after = 3
max_cloud = 40
executor = "serial"

[thresholds]
min_area_m2 = 500

[sources.sentinelhub]
client_id = "my-client-id"
client_secret = "VERYSECRETVALUE"

[alerts]
webhooks = ["{SLACK}", "{GENERIC}"]
retries = 2
"""


@pytest.fixture
def cfg_file(tmp_path):
    p = tmp_path / "conf" / "s2watch.toml"
    p.parent.mkdir()
    p.write_text(FILE)
    return p


def test_defaults_without_any_file(tmp_path):
    cfg = load_config(env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert cfg == Config(output_root=cfg.output_root)
    assert cfg.config_path is None
    assert cfg.state_file == cfg.output_root / "state.sqlite"
    assert cfg.output_root.is_absolute()


def test_file_values_are_read_and_relative_paths_follow_the_file(cfg_file):
    cfg = load_config(cfg_file, env={})
    assert cfg.aois == ("tartus-naval-facility", "khmeimim")
    assert cfg.source == "earth-search"
    assert cfg.since == date(2024, 9, 1) and cfg.until == date(2025, 3, 31)
    assert cfg.reference == (date(2024, 3, 1), date(2024, 8, 31))
    assert cfg.confirm_after == 3 and cfg.max_cloud == 40.0
    assert cfg.thresholds == {"min_area_m2": 500}
    assert cfg.source_options["sentinelhub"]["client_secret"] == "VERYSECRETVALUE"
    assert cfg.notify == (SLACK, GENERIC) and cfg.notify_retries == 2
    assert cfg.output_root == cfg_file.parent / "out-from-file"
    assert cfg.config_path == cfg_file


def test_precedence_command_line_over_environment_over_file(cfg_file, tmp_path):
    env = {"S2WATCH_SOURCE": "simulated", "S2WATCH_MAX_CLOUD": "55", "S2WATCH_OUT": str(tmp_path / "env-root")}
    cfg = load_config(cfg_file, env=env)
    assert cfg.source == "simulated"  # env beats file
    assert cfg.max_cloud == 55.0
    assert cfg.output_root == tmp_path / "env-root"
    assert cfg.confirm_after == 3  # file value kept where nothing overrides it
    cli = load_config(cfg_file, env=env, overrides={"source": "cdse", "max_cloud": None, "output_root": str(tmp_path / "cli")})
    assert cli.source == "cdse"  # command line beats env
    assert cli.max_cloud == 55.0  # None means "not given on the command line"
    assert cli.output_root == tmp_path / "cli"


def test_file_is_found_through_S2WATCH_CONFIG_and_the_default_path(cfg_file, tmp_path):
    assert load_config(env={"S2WATCH_CONFIG": str(cfg_file)}).source == "earth-search"
    xdg = tmp_path / "xdg"
    default = default_config_path({"XDG_CONFIG_HOME": str(xdg)})
    assert default == xdg / "s2watch" / "config.toml"
    default.parent.mkdir(parents=True)
    default.write_text('[monitor]\nsource = "planetary-computer"\n')
    assert load_config(env={"XDG_CONFIG_HOME": str(xdg)}).source == "planetary-computer"
    # --config beats S2WATCH_CONFIG
    assert load_config(default, env={"S2WATCH_CONFIG": str(cfg_file)}).source == "planetary-computer"


def test_loading_never_writes_files(cfg_file, tmp_path):
    before = sorted(p for p in tmp_path.rglob("*"))
    load_config(cfg_file, env={"XDG_CONFIG_HOME": str(tmp_path / "nothing-here")})
    load_config(env={"XDG_CONFIG_HOME": str(tmp_path / "nothing-here")})
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_secrets_are_masked_in_repr_and_masked_dict(cfg_file):
    cfg = load_config(cfg_file, env={})
    text = repr(cfg) + str(cfg.masked())
    for secret in ("VERYSECRETVALUE", "abcDEF123ghiJKL456mno", "hunter2", "zzTOPsecret99", "B0BBBB222"):
        assert secret not in text
    assert "my-client-id" in text  # ids are not secrets
    assert "hooks.slack.com" in text and "alerts.example.org" in text


@pytest.mark.parametrize(
    "url, hidden, kept",
    [
        (SLACK, ["abcDEF123ghiJKL456mno", "T0AAAA111"], ["https://hooks.slack.com/services/"]),
        ("https://discord.com/api/webhooks/123456789/AbCdEf-token-xyz", ["AbCdEf-token-xyz", "123456789"], ["discord.com/api/webhooks/"]),
        (GENERIC, ["hunter2", "zzTOPsecret99"], ["user:", "channel=ops", "alerts.example.org/notify"]),
        ("http://127.0.0.1:8080/hook", [], ["127.0.0.1:8080"]),
    ],
)
def test_mask_url(url, hidden, kept):
    m = mask_url(url)
    for h in hidden:
        assert h not in m
    for k in kept:
        assert k in m


@pytest.mark.parametrize(
    "text, match",
    [
        ("[monitor]\nconfirm_after = 'two'\n", r"monitor\.confirm_after.*'two'"),
        ("[monitor]\nsince = 'yesterday'\n", r"monitor\.since.*'yesterday'"),
        ("[monitor]\nexecutor = 'spark'\n", r"executor 'spark' is unknown; use one of serial, dask"),
        ("[monitor]\nmax_cloud = 140\n", r"monitor\.max_cloud.*140"),
        ("[monitor]\nsorce = 'x'\n", r"unknown key monitor\.sorce; valid keys"),
        ("[outptu]\nroot = 'x'\n", r"unknown table \[outptu\]"),
        ("[monitor\n", r"not valid TOML"),
        ("[monitor]\nreference = ['2024-05-01', '2024-01-01']\n", r"reference period 2024-05-01/2024-01-01 ends before"),
    ],
)
def test_bad_file_values_raise_config_error_naming_file_key_value(tmp_path, text, match):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as ei:
        load_config(p, env={})
    assert str(p) in str(ei.value)


def test_bad_webhook_value_does_not_echo_the_url(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text(f'[alerts]\nwebhooks = "{SLACK}"\n')  # a string where a list is wanted is accepted...
    assert load_config(p, env={}).notify == (SLACK,)
    p.write_text("[alerts]\nwebhooks = [1, 2]\n")
    with pytest.raises(ConfigError, match=r"alerts\.webhooks = \*\*\*\* is not a list of URLs"):
        load_config(p, env={})


def test_bad_environment_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match=r"environment variable S2WATCH_CONFIRM_AFTER: value 'x'"):
        load_config(env={"S2WATCH_CONFIRM_AFTER": "x", "XDG_CONFIG_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"S2WATCH_CONFIG"):
        load_config(env={"S2WATCH_CONFIG": str(tmp_path / "missing.toml")})
    with pytest.raises(ConfigError, match=r"missing\.toml: configuration file not found \(from --config\)"):
        load_config(tmp_path / "missing.toml", env={})


def test_environment_lists_and_reference(tmp_path):
    cfg = load_config(
        env={
            "S2WATCH_AOIS": "tartus-port, khmeimim",
            "S2WATCH_REFERENCE": "2024-01-01/2024-06-30",
            "S2WATCH_NOTIFY": "http://127.0.0.1:1/a,http://127.0.0.1:1/b",
            "XDG_CONFIG_HOME": str(tmp_path),
        }
    )
    assert cfg.aois == ("tartus-port", "khmeimim")
    assert cfg.reference == (date(2024, 1, 1), date(2024, 6, 30))
    assert len(cfg.notify) == 2


def test_default_reference_is_the_180_days_before_since():
    cfg = Config(output_root=Path("/x"), since=date(2024, 9, 1), until=date(2024, 12, 31))
    assert cfg.reference_period() == (date(2024, 3, 5), date(2024, 8, 31))
    assert (date(2024, 8, 31) - date(2024, 3, 5)).days + 1 == 180
    cfg2 = Config(output_root=Path("/x"), until=date(2025, 1, 31))
    assert cfg2.period() == (date(2025, 1, 1), date(2025, 1, 31))


def test_config_is_frozen():
    cfg = Config(output_root=Path("/x"))
    with pytest.raises(AttributeError):
        cfg.source = "cdse"  # type: ignore[misc]
    assert os.fspath(cfg.state_file) == "/x/state.sqlite"


def test_tile_size_from_file_environment_and_bad_values(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[monitor]\ntile_px = 1024\nhalo_px = 64\n")
    cfg = load_config(f, env={})
    assert (cfg.tile_px, cfg.halo_px) == (1024, 64)
    assert load_config(f, env={"S2WATCH_TILE_PX": "0"}).tile_px == 0
    assert load_config(env={"XDG_CONFIG_HOME": str(tmp_path)}).tile_px is None  # decided by the AOI's size
    f.write_text("[monitor]\ntile_px = 100\n")
    with pytest.raises(ConfigError, match=r"c\.toml: tile_px 100 is too small; use at least 256 px, or 0 to never tile"):
        load_config(f, env={})
    f.write_text("[monitor]\nmemory_gb = 3.5\n")
    assert load_config(f, env={}).memory_gb == 3.5
    assert load_config(f, env={"S2WATCH_MEMORY_GB": "12"}).memory_gb == 12.0
    assert load_config(env={"XDG_CONFIG_HOME": str(tmp_path)}).memory_gb is None  # S2WATCH_MEMORY_GB or 6 at use
    f.write_text("[monitor]\nmemory_gb = 0\n")
    with pytest.raises(ConfigError, match=r"memory_gb must be a positive number of GiB, got 0"):
        load_config(f, env={})
    f.write_text("[monitor]\nhalo_px = -1\n")
    with pytest.raises(ConfigError, match=r"halo_px must be >= 0, got -1"):
        load_config(f, env={})
