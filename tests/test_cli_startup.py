"""Fast start, early errors: building the parsers, --help and option errors load no heavy library.

Each check runs in a fresh interpreter (this test process has long imported torch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from instantid.cli import COMMANDS

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ("torch", "diffusers", "transformers", "cv2", "insightface", "dlib", "onnxruntime", "accelerate",
         "huggingface_hub", "safetensors", "compel")
# `instantid --help` must answer in well under a second: building every parser imports about BOUND modules
# at most (torch alone imports well over a thousand).
PARSER_MODULE_BOUND = 200


def run_python(code: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


LOADED = f"""
import contextlib, io, json, sys
def loaded():
    return sorted(m for m in {HEAVY!r} if m in sys.modules)
"""


def test_building_every_parser_imports_nothing_heavy():
    result = run_python(LOADED + """
from instantid.cli import build_parser
build_parser()
print(json.dumps({"loaded": loaded(), "arrays": sorted(m for m in ("numpy", "PIL") if m in sys.modules)}))
""")
    assert result["loaded"] == [] and result["arrays"] == []


@pytest.mark.parametrize("argv", [
    [],
    *[[command, "--help"] for command in COMMANDS],
    ["generate", "--face", "me.jpg", "--prompt", "x", "--out", "o.png", "--steps", "0"],
    ["generate", "--face", "me.jpg", "--prompt", "x", "--out", "o.png", "--no-such-flag"],
    ["generate", "--face", "no-such-photo.jpg", "--prompt", "x", "--out", "o.png"],
    ["generate", "--face", __file__, "--prompt", "x", "--out", "o.png", "--style", "no-such-style"],
    ["generate", "--face", __file__, "--prompt", "x", "--out", "o.png", "--control-start", "0.6", "--control-end", "0.4"],
    ["swap", "--face", "no-such-photo.jpg", "--target", "t.jpg", "--out", "o.png", "--face-backend", "nope"],
    ["multi", "--face", "a.jpg", "--prompt", "x", "--out", "o.png"],
    ["train", "--data_dir", "no-such-dir", "--output_dir", "out", "--lerning_rate", "1"],
    ["train", "--data_dir", "no-such-dir", "--output_dir", "out"],
    ["bench", "--arch", "sdxl", "--runs", "0", "--no-progress"],
    ["eval", "--reference", "no-such-photo.jpg", "--generated", "x.png", "--out", "e"],
    ["faces", "no-such-photo.jpg"],
    ["prepare-data", "no-such-dir", "out"],
])
def test_help_and_argument_errors_answer_before_any_heavy_import(argv):
    result = run_python(LOADED + f"""
from instantid.cli import main
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
        code = main({argv!r})
    except SystemExit as exit:
        code = exit.code
print(json.dumps({{"code": code, "err": err.getvalue(), "out": out.getvalue(), "loaded": loaded()}}))
""")
    assert result["loaded"] == [], result
    if argv and argv[-1] == "--help":
        assert result["code"] == 0 and "usage:" in result["out"]
    elif argv:
        assert result["code"] not in (0, None) and result["err"].strip()  # refused, with a message
        assert "Traceback" not in result["err"]


def imported_modules(code: str) -> int:
    """How many modules `code` imports in a fresh interpreter (beyond the interpreter's own start)."""
    result = run_python(f"""
import json, sys
before = set(sys.modules)
{code}
print(json.dumps({{"count": len(set(sys.modules) - before)}}))
""")
    return result["count"]


def test_building_the_parsers_imports_few_modules_counted_not_timed():
    """Building every parser imports a few hundred small modules at most (the standard library's argparse,
    json, ... and our own option tables), a small fraction of what torch alone brings: counted, not timed."""
    parsers = imported_modules("from instantid.cli import build_parser; build_parser()")
    torch_alone = imported_modules("import torch")
    assert parsers < PARSER_MODULE_BOUND and parsers < torch_alone / 4, (parsers, torch_alone)


FACE_COMMANDS = ("faces", "generate", "swap", "multi", "serve", "ui", "prepare-data", "eval", "bench")


def help_text(command: str, capsys) -> str:
    from instantid.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_one_face_backend_option_in_every_command_that_analyses_faces(capsys):
    from instantid.params import FACE_BACKEND_CHOICES, FACE_BACKEND_RULE

    rule = " ".join(FACE_BACKEND_RULE.split())
    for name in FACE_COMMANDS:
        text = help_text(name, capsys)
        assert f"--face-backend {{{','.join(FACE_BACKEND_CHOICES)}}}" in text, name
        assert f"Default {rule}" in text and "--face-models DIR" in text, name


@pytest.mark.parametrize("argv, released_weights, expected", [
    (["generate", "--face", "a.jpg", "--prompt", "x", "--out", "o.png"], True, "antelopev2"),
    (["generate", "--tiny", "--face", "a.jpg", "--prompt", "x", "--out", "o.png"], True, "dlib"),
    (["generate", "--face-backend", "dlib", "--face", "a.jpg", "--prompt", "x", "--out", "o.png"], True, "dlib"),
    (["faces", "a.jpg"], False, "dlib"),
    (["faces", "a.jpg", "--backend", "antelopev2"], False, "antelopev2"),  # the old flag still works
    (["prepare-data", "src", "out"], False, "dlib"),
    (["bench"], False, "dlib"),
])
def test_the_auto_rule(argv, released_weights, expected):
    from instantid.cli import build_parser
    from instantid.params import face_backend_name

    args = build_parser().parse_args(argv)
    assert face_backend_name(args.face_backend, released_weights=released_weights,
                             tiny=getattr(args, "tiny", False)) == expected


def test_generation_imports_neither_the_bench_nor_the_testing_room():
    result = run_python("""
import json, sys
import instantid.pipelines.from_photos, instantid.pipelines.face_swap, instantid.pipelines.multi_identity
import instantid.pipelines.loading, instantid.pipelines.sdxl, instantid.pipelines.sd15, instantid.cli.common
print(json.dumps({"rooms": sorted(m for m in sys.modules if m.startswith(("instantid.bench", "instantid.testing")))}))
""")
    assert result["rooms"] == []


# Issue 12, category 2: mistakes in option values, styles, LoRA paths, keypoints, devices and output places
# are refused before any model, and without even importing the heavy libraries (so in well under a second
# on an idle machine; no timing is asserted, the imports are).
def _mistakes(face: str, tmp: Path) -> list[list[str]]:
    (tmp / "data").mkdir(exist_ok=True)
    (tmp / "data" / "manifest.jsonl").write_text("")
    (tmp / "styles.json").write_text("not json {")
    gen = ["generate", "--tiny", "--face", face, "--prompt", "x", "--out", str(tmp / "o.png")]
    swap = ["swap", "--tiny", "--face", face, "--target", face, "--out", str(tmp / "o.png")]
    multi = ["multi", "--tiny", "--face", face, "--prompt", "x", "--out", str(tmp / "o.png")]
    train = ["train", "--data_dir", str(tmp / "data"), "--output_dir", str(tmp / "run")]
    return [
        gen + ["--style", "no-such-style"], gen + ["--style", "a", "--styles-file", str(tmp / "styles.json")],
        gen + ["--lora", "missing/style.safetensors"], gen + ["--kps", "1,2,3"], gen + ["--device", "tpu9"],
        gen + ["--device", "meta"], gen + ["--interpolate", face, "--weights", "0,1.5"], gen + ["--yaw=200"],
        gen + ["--width", "4096", "--height", "4096"], gen + ["--out", "/proc/instantid/o.png"],
        gen + ["--out", str(tmp / "o.txt")], gen + ["--face-detail", "on", "--face-detail-strength", "0.1"],
        gen + ["--canny", face, "--canny-scale", "7"],
        swap + ["--mask-grow", "nan"], swap + ["--working-size", "1024"], swap + ["--mask-out", str(tmp / "m.txt")],
        swap + ["--device", "gpu"], multi + ["--box", "0,0,64,64", "--scale", "-1"],
        multi + ["--box", "0,0,64,64", "--width", "4096", "--height", "4096"], multi + ["--box", "10,10,10,50"],
        multi + ["--box", "0,0,64,64", "--box", "64,0,128,64"],
        train + ["--output_dir", "/proc/instantid-run"], train + ["--resolution", "100000"],
        ["faces", face, "--kps-out", str(tmp / "k.txt")],
    ]


def test_option_mistakes_are_refused_without_importing_heavy_libraries(photos, tmp_path):
    argvs = _mistakes(str(photos["astronaut"]), tmp_path)
    result = run_python(LOADED + f"""
from instantid.cli import main
results = []
for argv in {argvs!r}:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
    results.append({{"argv": argv[-2:], "code": code, "err": err.getvalue(), "loaded": loaded()}})
print(json.dumps(results))
""")
    for case in result:
        assert case["code"] not in (0, None) and case["err"].strip() and "Traceback" not in case["err"], case
        assert case["loaded"] == [], case  # nothing heavy, not even torch


def test_refusals_that_need_torch_import_nothing_else(photos, tmp_path):
    """Whether a GPU is there needs torch: still no diffusers, transformers or face library, and no model."""
    face = str(photos["astronaut"])
    argvs = [["generate", "--tiny", "--face", face, "--prompt", "x", "--out", str(tmp_path / "o.png"),
              "--device", "cuda:7"],
             ["swap", "--tiny", "--face", face, "--target", face, "--out", str(tmp_path / "o.png"), "--device", "mps"]]
    result = run_python(LOADED + f"""
from instantid.cli import main
results = []
for argv in {argvs!r}:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    results.append({{"code": code, "err": err.getvalue(), "loaded": loaded()}})
print(json.dumps(results))
""")
    for case in result:
        assert case["code"] == 1 and "error: " in case["err"], case
        assert set(case["loaded"]) <= {"torch"}, case
