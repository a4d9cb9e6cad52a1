"""The Prefect flows run for real against a temporary Prefect API."""

import json

import pytest


@pytest.mark.slow
def test_build_sdag_flow(prefect_server, tmp_path):
    from flows.build_sdag import build_sdag_flow

    params = tmp_path / "params.yaml"
    params.write_text("sdag:\n  scope: all\n")
    n = build_sdag_flow(out=str(tmp_path / "sdag"), params_file=str(params))
    assert n == 82115
    assert json.loads((tmp_path / "sdag" / "sdag.json").read_text())["meta"]["nodes"] == 82115


def test_prepare_data_flow(prefect_server, tmp_path):
    from flows.data import prepare_data_flow

    params = tmp_path / "params.yaml"
    params.write_text(
        "data:\n  seed: 1\n  datasets:\n    digits: {expert_train: 5, probe: 3, target_test: 2}\n"
        "  tuxpaint_probe_fraction: 0.0\n"
    )
    paths = prepare_data_flow(out=str(tmp_path / "splits"), summary=str(tmp_path / "s.json"), params_file=str(params))
    assert set(paths) == {"expert_train", "probe", "target_test", "final_test"}  # final_test: empty here
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["digits"]["probe"] == {"images": 30, "classes": 10} and "tuxpaint" not in s
