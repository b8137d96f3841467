"""Every tool command in the fenced bash blocks of README.md, INSTALL.md, the datasets/ pages and
docs/{RESULTS,METHODS}.md names a config that exists, and its config plus trailing ``KEY VALUE`` options pass
the project's load_config + validation (paths of checkpoints and data need not exist)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from iared_video.methods import load_config

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "INSTALL.md", "datasets/KINETICS.md", "datasets/IMAGENET.md", "datasets/SYNTHETIC.md",
        "docs/RESULTS.md", "docs/METHODS.md")
FENCE = re.compile(r"^```(?:bash|sh|shell|console)[ \t]*\n(.*?)^```", re.M | re.S)
TOOL = re.compile(r"^tools/\w+\.py$")
KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)+$|^[A-Z][A-Z0-9_]*$")


@dataclass
class Command:
    """One tool invocation found in a doc."""

    doc: str
    tool: str
    cfg: str | None
    opts: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.doc}: {self.tool} --cfg {self.cfg} {' '.join(self.opts)}"


def shell_lines(text: str) -> list[str]:
    """Commands of the fenced shell blocks: continuations joined, comments dropped, ``&&`` / ``;`` split."""
    lines = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines += [part.strip() for part in re.split(r"&&|;", line) if part.strip()]
    return lines


def trailing_opts(tokens: list[str]) -> list[str]:
    """The ``KEY VALUE`` pairs at the end of a command: from the first config key after the last ``--flag``
    (flag values are paths and numbers, never upper-case dotted keys)."""
    last_flag = max((i for i, t in enumerate(tokens) if t.startswith("-")), default=-1)
    start = next((i for i in range(last_flag + 1, len(tokens)) if KEY.match(tokens[i])), len(tokens))
    return tokens[start:]


def parse_command(doc: str, line: str) -> Command | None:
    """The tool, ``--cfg`` and trailing options of one shell command (None if it runs no ``tools/*.py``)."""
    tokens = shlex.split(line)
    start = next((i for i, t in enumerate(tokens) if TOOL.match(t)), None)
    if start is None:
        return None
    args = tokens[start + 1:]
    cfg = next((args[i + 1] for i, t in enumerate(args[:-1]) if t == "--cfg"), None)
    cfg = cfg or next((t.split("=", 1)[1] for t in args if t.startswith("--cfg=")), None)
    return Command(doc, tokens[start], cfg, trailing_opts(args))


def doc_commands() -> list[Command]:
    commands = []
    for doc in DOCS:
        for line in shell_lines((ROOT / doc).read_text(encoding="utf-8")):
            command = parse_command(doc, line)
            if command is not None:
                commands.append(command)
    return commands


COMMANDS = doc_commands()


def test_the_docs_have_commands_to_check() -> None:
    run_net = [c for c in COMMANDS if c.tool == "tools/run_net.py" and c.cfg]
    assert len(run_net) >= 4 and any(c.opts for c in run_net)
    assert any(c.tool == "tools/eval_heatmaps.py" for c in COMMANDS)


def test_parser_on_examples() -> None:
    line = ("python tools/eval_heatmaps.py --cfg a.yaml --attention-blocks 0 1 2 --max-samples 6 "
            "TEST.CHECKPOINT_FILE_PATH x.pyth IARED.TAU 1.5")
    command = parse_command("x", line)
    assert command.cfg == "a.yaml" and command.opts == ["TEST.CHECKPOINT_FILE_PATH", "x.pyth", "IARED.TAU", "1.5"]
    assert parse_command("x", "python tools/make_synthetic.py --out data/synthetic --videos 240").opts == []
    assert parse_command("x", "bash tools/install.sh") is None
    stale = parse_command("x", "python tools/run_net.py --cfg configs/Synthetic/iared_tsf_tiny.yaml")  # the old README
    assert not (ROOT / stale.cfg).is_file()
    lines = shell_lines("```bash\na \\\n  b # note\n# skip\nc && d\n```\n")
    assert [" ".join(line.split()) for line in lines] == ["a b", "c", "d"]


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_doc_command_config_exists_and_validates(command: Command) -> None:
    assert (ROOT / command.tool).is_file(), f"{command}: no such tool"
    if command.cfg:
        assert (ROOT / command.cfg).is_file(), f"{command}: no such config"
    assert len(command.opts) % 2 == 0, f"{command}: options must come as KEY VALUE pairs"
    keys = command.opts[::2]
    assert all(KEY.match(k) for k in keys), f"{command}: {keys}"
    load_config(str(ROOT / command.cfg) if command.cfg else None, command.opts)


def test_readme_test_command_is_what_ci_runs() -> None:
    """The README's "Tests (what CI runs ...)" block is the one command of ``.ci/run`` (lint, mypy, then pytest)."""
    after = (ROOT / "README.md").read_text().split("Tests (what CI runs", 1)[1]
    readme = FENCE.findall(after)[0].strip()
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci == [readme] and "ruff check" in readme and "mypy" in readme and "pytest" in readme
