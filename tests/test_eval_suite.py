"""`instantid eval --suite`: the shipped tiny suite generates its grid (resumably) and is scored per setting."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from instantid.cli import main
from instantid.errors import UsageError
from instantid.evaluation.suite import Job, generate_suite, load_suite

SUITE = Path(__file__).resolve().parents[1] / "examples" / "eval_suite_tiny.json"


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    """One CLI run of the example suite, with a tiny local CLIP so every column gets filled."""
    from instantid.testing.tiny import build_tiny_clip

    root = tmp_path_factory.mktemp("suite")
    clip = build_tiny_clip(root / "tiny-clip")
    out = root / "out"
    with pytest.MonkeyPatch.context() as patch:  # the session's tiny models (see conftest's tiny_pipe)
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
        code = main(["eval", "--suite", str(SUITE), "--out", str(out), "--recognizer", "dlib", "--clip-model",
                     str(clip), "--no-progress"])
    assert code == 0
    return out


@pytest.mark.slow
def test_suite_generates_the_whole_grid_and_scores_each_setting(suite_run):
    suite = load_suite(SUITE)
    jobs = suite.jobs()
    assert len(jobs) == 3 * 1 * 2 * 3  # settings x prompts x seeds x (2 people + without identity)
    assert all(job.path(suite_run).is_file() for job in jobs)
    summary = list(csv.DictReader(open(suite_run / "report" / "summary.csv")))
    assert [row["setting"] for row in summary] == ["released", "noise 0.35", "face detail"]
    for row in summary:
        assert row["images"] == "4"
        assert 0.0 <= float(row["detection_rate_dlib"]) <= 1.0  # a named column (noise images: mostly no face)
        assert -1.0 <= float(row["clip_t_mean"]) <= 1.0 and -1.0 <= float(row["clip_i_no_identity_mean"]) <= 1.0
    images = list(csv.DictReader(open(suite_run / "report" / "images.csv")))
    assert len(images) == 12 and {"clip_i_reference", "clip_i_no_identity", "similarity_dlib"} <= set(images[0])
    report = json.loads((suite_run / "report" / "report.json").read_text())
    # The baseline: two different people (the astronaut and Grace Hopper) score ~0.886 with dlib.
    assert report["unrelated_people"]["dlib"] == pytest.approx(0.886, abs=0.01)
    text = (suite_run / "report" / "summary.md").read_text()
    assert "unrelated people" in text and "flatters the model" in text  # dlib conditioned and scored
    assert Image.open(suite_run / "report" / "similarity_hist.png").size[0] > 100


@pytest.mark.slow
def test_identity_and_settings_change_the_image_and_the_run_resumes(suite_run, tiny_pipe):
    suite = load_suite(SUITE)

    def pixels(job):
        return np.asarray(Image.open(job.path(suite_run)).convert("RGB"), dtype=np.int16)

    with_face = Job("released", "grace_hopper", 0, 0)
    assert np.abs(pixels(with_face) - pixels(Job("released", None, 0, 0))).max() > 0
    assert np.abs(pixels(with_face) - pixels(Job("noise 0.35", "grace_hopper", 0, 0))).max() > 0
    before = pixels(with_face)
    with_face.path(suite_run).unlink()
    made = []
    generate_suite(suite, suite_run, pipe=tiny_pipe, progress=False, on_image=lambda job, new: new and made.append(job))
    assert made == [with_face]  # only the missing image is generated again...
    assert np.array_equal(pixels(with_face), before)  # ...identical to the first time (same seed)


def test_another_suite_in_the_same_folder_is_refused(tmp_path):
    from instantid.evaluation.suite import check_resumable

    out = tmp_path / "out"
    check_resumable(load_suite(SUITE), out)  # what a first run of the example leaves in OUT
    check_resumable(load_suite(SUITE), out)  # the same suite again: resuming is fine
    other = tmp_path / "other.json"
    data = json.loads(SUITE.read_text())
    data["seeds"] = [5]
    other.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="different suite"):
        generate_suite(load_suite(other), out, progress=False)


@pytest.mark.parametrize("change, message", [
    ({"settings": {"x": {"guidance_scale": 99}}}, "between"),
    ({"settings": {"x": {"sharpness": 1}}}, "unknown key 'sharpness'"),
    ({"settings": {"x": {"seed": 3}}}, "unknown key 'seed'"),
    ({"settings": {"x": {"face_detail": "maybe"}}}, "face_detail must be one of"),
    ({"people": {}}, '"people"'),
    ({"people": {"a": ["missing.jpg"]}}, "missing.jpg not found"),
    ({"prompts": []}, '"prompts"'),
    ({"seeds": [-1]}, '"seeds"'),
    ({"resolution": 5}, "unknown key"),
])
def test_bad_suites_fail_before_any_model_loads(tmp_path, change, message):
    data = {**json.loads(SUITE.read_text()), **change}
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match=message):
        load_suite(path)


def test_cli_suite_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["eval", "--suite", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "error: suite file" in capsys.readouterr().err
    assert main(["eval", "--suite", str(SUITE), "--reference", "x.jpg", "--out", str(tmp_path / "o")]) == 1
    assert "leave out --reference" in capsys.readouterr().err
    assert main(["eval", "--out", str(tmp_path / "o")]) == 1
    assert "give --reference and --generated" in capsys.readouterr().err


def test_the_sdxl_example_suite_is_valid():
    suite = load_suite(SUITE.with_name("eval_suite_sdxl.json"))
    assert not suite.tiny and suite.face_backend == "antelopev2"
    assert len(suite.jobs()) == 4 * 4 * 4 * (3 + 1)  # the count docs/evaluation.md gives
    assert suite.settings["noise 0.35"]["negative_face_noise"] == 0.35


FLUX_SUITE = Path(__file__).resolve().parents[1] / "examples" / "eval_suite_flux_tiny.json"


@pytest.mark.slow
def test_flux_suite_generates_and_scores(tmp_path_factory):
    """`eval --suite` on the FLUX family (tiny, dlib path): every image made with FLUX's knobs, a report written."""
    from instantid.testing.tiny import build_tiny_clip

    root = tmp_path_factory.mktemp("flux-suite")
    out = root / "out"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
        code = main(["eval", "--suite", str(FLUX_SUITE), "--out", str(out), "--recognizer", "dlib", "--clip-model",
                     str(build_tiny_clip(root / "tiny-clip")), "--no-progress"])
    assert code == 0
    suite = load_suite(FLUX_SUITE)
    jobs = suite.jobs()
    assert len(jobs) == 2 * 1 * 1 * 3 and all(job.path(out).is_file() for job in jobs)
    made = json.loads(Image.open(next(job.path(out) for job in jobs if job.setting == "true cfg 3")).text["parameters"])
    assert made["true_cfg_scale"] == 3.0
    summary = list(csv.DictReader(open(out / "report" / "summary.csv")))
    assert [row["setting"] for row in summary] == ["infiniteyou", "true cfg 3"]
