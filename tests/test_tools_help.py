"""Every command-line tool answers --help (argparse formats each help string, so a stray '%' breaks it)."""

import glob
import os
import runpy
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = sorted(glob.glob(os.path.join(ROOT, "tools", "*.py")))


@pytest.mark.parametrize("tool", TOOLS, ids=os.path.basename)
def test_help_exits_cleanly(tool: str, monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", [tool, "--help"])
    monkeypatch.syspath_prepend(os.path.dirname(tool))
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(tool, run_name="__main__")
    assert exit_info.value.code in (0, None)
    assert "usage:" in capsys.readouterr().out
