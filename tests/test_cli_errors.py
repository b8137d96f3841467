"""User errors end the tools with exit code 2 and one line on stderr, no traceback (``--debug`` keeps it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from iared_video.utils.cli import USER_ERROR_EXIT, one_line, run_tool

ROOT = Path(__file__).resolve().parents[1]
TINY_CFG = """\
MODEL: {MODEL_NAME: timesformer, EMBED_DIM: 32, DEPTH: 2, NUM_HEADS: 2, NUM_CLASSES: 3}
DATA: {NUM_FRAMES: 2, TRAIN_CROP_SIZE: 32, TEST_CROP_SIZE: 32, TRAIN_JITTER_SCALES: [32, 40]}
METHOD: {NAME: iared}
IARED: {NUM_GROUPS: 1}
TRAIN: {ENABLE: False}
TEST: {ENABLE: False}
DEVICE: cpu
"""
CASES = ("truncated_checkpoint", "missing_file", "non_video_file", "unknown_key")
EXPECTED = {"truncated_checkpoint": "truncated", "missing_file": "not found|does not exist|No such file",
            "non_video_file": r"text\.mp4.*decord: .*pyav: ", "unknown_key": "unknown key 'FOO.BAR'"}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A tiny config, a truncated checkpoint, a text file named .mp4 and a split listing it (with a mask)."""
    root = tmp_path_factory.mktemp("user_errors")
    (root / "tiny.yaml").write_text(TINY_CFG)
    torch.save({"model_state": {"w": torch.randn(20000)}}, root / "full.pyth")
    data = (root / "full.pyth").read_bytes()
    (root / "trunc.pyth").write_bytes(data[: len(data) // 2])
    (root / "text.mp4").write_text("not a video\n" * 20)
    split = root / "split"
    (split / "masks").mkdir(parents=True)
    (split / "val.csv").write_text(f"{root / 'text.mp4'} 0\n")
    (split / "masks" / "text.npz").write_bytes(b"")
    return {k: str(v) for k, v in {"root": root, "cfg": root / "tiny.yaml", "trunc": root / "trunc.pyth",
                                   "text": root / "text.mp4", "split": split}.items()}


def _argv(tool: str, case: str, f: dict[str, str]) -> list[str]:
    """Command-line arguments of ``tool`` that make the user error ``case``."""
    out, missing = os.path.join(f["root"], f"out_{tool}_{case}"), os.path.join(f["root"], "missing.mp4")
    base = {"run_net": ["--cfg", f["cfg"], "OUTPUT_DIR", out],
            "visualize": ["--cfg", f["cfg"], "--input", f["text"], "OUTPUT_DIR", out],
            "interpreter": ["-p", f["text"], "-o", out, "--cfg", f["cfg"]],
            "eval_heatmaps": ["--cfg", f["cfg"], "OUTPUT_DIR", out, "DATA.PATH_TO_DATA_DIR", f["split"]]}[tool]
    if case == "truncated_checkpoint":
        return base + (["TEST.ENABLE", "True"] if tool == "run_net" else []) + ["TEST.CHECKPOINT_FILE_PATH", f["trunc"]]
    if case == "unknown_key":
        return base + ["FOO.BAR", "1"]
    if case == "missing_file":
        return {"run_net": ["--cfg", os.path.join(f["root"], "missing.yaml")],
                "visualize": ["--cfg", f["cfg"], "--input", missing, "OUTPUT_DIR", out],
                "interpreter": ["-p", missing, "-o", out],
                "eval_heatmaps": base + ["DATA.PATH_TO_DATA_DIR", os.path.join(f["root"], "no_such_dir")]}[tool]
    return base + (["VISUALIZE.ENABLE", "True", "VISUALIZE.INPUT", f["text"]] if tool == "run_net" else [])


def _run(tool: str, argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOG_LEVEL": ""}
    return subprocess.run([sys.executable, str(ROOT / "tools" / f"{tool}.py"), *argv], capture_output=True,
                          text=True, cwd=ROOT, timeout=180, env=env)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("tool", ["run_net", "visualize", "interpreter", "eval_heatmaps"])
def test_user_error_is_one_line_and_exit_code_2(files, tool: str, case: str) -> None:
    proc = _run(tool, _argv(tool, case, files))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == USER_ERROR_EXIT, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]]
    assert re.search(EXPECTED[case], lines[-1]), lines[-1]


def test_debug_flag_keeps_the_traceback(files) -> None:
    proc = _run("visualize", ["--debug", *_argv("visualize", "unknown_key", files)])
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


def test_run_tool_in_process(capsys, monkeypatch) -> None:
    from iared_video.config import ConfigError

    def failing(argv: list[str]) -> int:
        raise ConfigError("invalid config:\n  unknown key 'A'\n  bad value for 'B'")

    monkeypatch.delenv("LOG_LEVEL", raising=False)
    assert run_tool(failing, ["x"]) == USER_ERROR_EXIT
    assert capsys.readouterr().err == "error: invalid config: unknown key 'A'; bad value for 'B'\n"
    assert run_tool(lambda argv: [1, 2], ["x"]) == 0 and run_tool(lambda argv: 3, ["x"]) == 3
    with pytest.raises(ConfigError):
        run_tool(failing, ["--debug"])
    with pytest.raises(ConfigError):
        run_tool(failing, ["x", "LOG_LEVEL", "DEBUG"])
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_tool(lambda argv: 1 / 0, ["x"])
    assert one_line(FileNotFoundError("x")) == "x"
    assert one_line(FileNotFoundError(2, "No such file or directory", "/d/val.csv")) == \
        "No such file or directory: /d/val.csv"
