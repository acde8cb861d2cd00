"""`instantid bench --family flux`: one case per memory profile, on the tiny family."""

import json

import pytest

from instantid.cli import main

pytestmark = pytest.mark.slow


def test_flux_bench_one_case_per_profile(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    record = tmp_path / "flux.json"
    assert main(["bench", "--family", "flux", "--memory-profiles", "full", "offload", "8bit", "--runs", "1",
                 "--warmup", "0", "--steps", "2", "--size", "64", "--device", "cpu", "--json", str(record)]) == 0
    table = capsys.readouterr().out
    assert "| full |" in table and "| 8bit |" in table and "InfiniteYou's figure" in table
    cases = {case["profile"]: case for case in json.loads(record.read_text())["cases"]}
    assert list(cases) == ["full", "offload", "8bit"]
    assert cases["full"]["max_abs_latent_diff_vs_full"] == 0
    assert cases["offload"]["max_abs_latent_diff_vs_full"] <= 1e-5
    assert 0 < cases["8bit"]["max_abs_latent_diff_vs_full"] < 0.2
    assert cases["8bit"]["their_gb"] == 24 and all(case["seconds_per_image"] > 0 for case in cases.values())
