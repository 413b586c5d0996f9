"""The sources through the ``s2watch`` command line: a sentinelhub profile pointing at the local
imitation, dry run (PU reported, nothing downloaded), budget and bad credentials (one line,
non-zero exit, no secret)."""

from __future__ import annotations

import pytest

from ._fakes import TOKEN_PATH


@pytest.fixture
def profile(sh_server, sh_env, monkeypatch):
    def write(secret="fake-secret"):
        d = sh_env / "xdg" / "sentinelhub"
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.toml").write_text(
            f'[fake]\nsh_client_id = "fake-id"\nsh_client_secret = "{secret}"\n'
            f'sh_base_url = "{sh_server.url}"\nsh_token_url = "{sh_server.url}{TOKEN_PATH}"\n'
            "download_sleep_time = 0.01\nmax_download_attempts = 2\n"
        )
        monkeypatch.setenv("SH_PROFILE", "fake")

    return write


ARGS = ["detect", "tartus-naval-facility", "--source", "sentinelhub", "--before", "2022-01-15/2022-01-24",
        "--after", "2022-01-26/2022-02-05"]  # fmt: skip


def test_cli_dry_run_reports_pu_and_downloads_nothing(profile, sh_server, tmp_path, capsys):
    from pipeline.cli.main import main

    profile()
    code = main([*ARGS, "--out", str(tmp_path / "out"), "--dry-run", "--cache-dir", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert code == 0
    assert "1 acquisitions before, 1 after" in out
    assert "estimated processing units: 0.668" in out  # 2 x (155*154/512^2) x 11/3
    assert sh_server.count("/api/v1/process") == 0


def test_cli_budget_refuses_before_downloading(profile, sh_server, tmp_path, capsys):
    from pipeline.cli.main import main

    profile()
    code = main([*ARGS, "--out", str(tmp_path / "out"), "--max-pu", "0.1", "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 1
    assert "exceeds the budget max_pu=0.1" in err
    assert sh_server.count("/api/v1/process") == 0


def test_cli_bad_credentials_one_line_no_secret(profile, sh_server, tmp_path, capsys):
    from pipeline.cli.main import main

    profile(secret="s3cr3t-WRONG")
    code = main([*ARGS, "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "c")])
    cap = capsys.readouterr()
    assert code == 1
    lines = [ln for ln in cap.err.splitlines() if ln.startswith("s2watch: error:")]
    assert len(lines) == 1 and "credentials rejected" in lines[0]
    assert "s3cr3t-WRONG" not in cap.err + cap.out
