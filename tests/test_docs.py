"""The docs stay honest: every Python block in README.md and docs/*.md runs as
printed, the docs site builds with ``mkdocs build --strict``, and the
docstrings' ``>>>`` examples pass as doctests.

The blocks of one section (the text under one heading, down to the next
heading of any level) run in order in one namespace, as a reader pasting them
into one Python session would; each section runs in its own subprocess, and
each Markdown file in its own temporary working directory, shared by its
sections in file order (so a later section may open a file an earlier one
wrote). sqlite-utils keeps its docs honest the same way.

A block that cannot run in a test (it needs a GPU, a server, or blocks
forever) is preceded by a visible marker that says why, on the line right
before its fence::

    <!-- skip-test: needs a CUDA device -->

Use it sparingly: everything that can run here, runs.
"""

from __future__ import annotations

import doctest
import importlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP_MARKER = re.compile(r"<!--\s*skip-test:\s*(\S.*?)\s*-->")
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")


@dataclass
class Block:
    line: int            # 1-based line of the first code line in the .md file
    code: str
    skip: str | None     # the skip-test reason, if marked


@dataclass
class Section:
    path: Path
    heading: str
    line: int
    blocks: list[Block] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.line}:{self.heading[:40]}"


def sections(path: Path) -> list[Section]:
    """The sections of a Markdown file that hold at least one python block."""
    out: list[Section] = []
    current = Section(path, "(top)", 1)
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = FENCE.match(line)
        if m:
            indent, fence, lang = m.groups()
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(fence):
                j += 1
            if lang == "python":
                body = [ln[len(indent):] if ln.startswith(indent) else ln
                        for ln in lines[i + 1:j]]
                prev = lines[i - 1] if i else ""
                skip = SKIP_MARKER.search(prev)
                current.blocks.append(Block(i + 2, "\n".join(body) + "\n",
                                            skip.group(1) if skip else None))
            i = j + 1
            continue
        if line.startswith("#"):
            if current.blocks:
                out.append(current)
            current = Section(path, line.lstrip("#").strip(), i + 1)
        i += 1
    if current.blocks:
        out.append(current)
    return out


ALL_SECTIONS = [s for p in DOCS for s in sections(p)]

# Runs the blocks of one section in one namespace; each block is compiled
# with its Markdown file and line, so a traceback points at the docs.
RUNNER = r"""
import json, sys
blocks = json.load(sys.stdin)
ns = {"__name__": "__main__"}
for b in blocks:
    code = "\n" * (b["line"] - 1) + b["code"]
    exec(compile(code, b["file"], "exec"), ns)
"""


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    """One working directory per Markdown file, shared by its sections."""
    made: dict[Path, Path] = {}

    def get(path: Path) -> Path:
        if path not in made:
            made[path] = tmp_path_factory.mktemp(path.stem.replace(".", "_"))
        return made[path]

    return get


@pytest.mark.parametrize("section", ALL_SECTIONS, ids=lambda s: s.id)
def test_python_blocks_run_as_printed(section: Section, workdirs):
    blocks = [b for b in section.blocks if b.skip is None]
    if not blocks:
        pytest.skip("; ".join(b.skip or "" for b in section.blocks))
    payload = [{"file": str(section.path), "line": b.line, "code": b.code} for b in blocks]
    env = dict(os.environ, MPLBACKEND="Agg", TF_CPP_MIN_LOG_LEVEL="3",
               TOKENIZERS_PARALLELISM="false")
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    p = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(payload),
                       cwd=workdirs(section.path), capture_output=True, text=True,
                       timeout=300, env=env)
    assert p.returncode == 0, (
        f"{section.path.name}, section {section.heading!r} (line {section.line}) "
        f"failed:\n{p.stderr[-4000:]}")


def test_the_parser_sees_every_block_and_the_skip_marker():
    readme = sections(ROOT / "README.md")
    assert len(readme) >= 8
    assert all(b.code.strip() for s in readme for b in s.blocks)
    text = ROOT / "README.md"
    fences = len(re.findall(r"^```python$", text.read_text(), re.M))
    assert sum(len(s.blocks) for s in readme) == fences
    marked = [b for p in DOCS for s in sections(p) for b in s.blocks if b.skip]
    # Skipping is the exception: every marked block says why.
    assert all(len(b.skip or "") > 5 for b in marked)
    assert len(marked) <= 3, [f"{b.line}: {b.skip}" for b in marked]


# --- the docs site -------------------------------------------------------------

def test_mkdocs_builds_strict(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    cmd = [str(mkdocs)] if mkdocs.exists() else [sys.executable, "-m", "mkdocs"]
    p = subprocess.run([*cmd, "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    site = tmp_path / "site"
    for page in ("index.html", "install/index.html", "rag/index.html",
                 "reference/synadb/index.html", "FORMAT/index.html",
                 "benchmarks/index.html", "outgrowing/index.html"):
        assert (site / page).exists(), page
    # The reference is generated from the docstrings, not written by hand.
    assert "put_float" in (site / "reference/synadb/index.html").read_text()


def test_every_docs_page_is_in_the_nav():
    import yaml  # mkdocs' own dependency

    class Loader(yaml.SafeLoader):
        pass

    # mkdocs.yml may carry !!python/name tags (material's emoji); ignore them.
    Loader.add_multi_constructor("tag:yaml.org,2002:python/",
                                 lambda loader, suffix, node: None)
    nav = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)["nav"]

    def pages(items):
        for item in items:
            value = item if isinstance(item, str) else next(iter(item.values()))
            if isinstance(value, list):
                yield from pages(value)
            else:
                yield value

    listed = set(pages(nav))
    on_disk = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert on_disk <= listed, sorted(on_disk - listed)


# --- docstring examples ---------------------------------------------------------

def _modules_with_examples() -> list[str]:
    names = []
    for path in sorted((ROOT / "synadb").rglob("*.py")):
        if ">>>" in path.read_text(encoding="utf-8"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            names.append(".".join(parts))
    return names


@pytest.mark.parametrize("module", _modules_with_examples())
def test_docstring_examples(module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # examples may write files
    mod = importlib.import_module(module)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(mod) if t.examples]
    for t in tests:
        runner.run(t)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {attempted} examples failed in {module} (output above)"


def test_the_doctest_list_is_not_empty():
    mods = _modules_with_examples()
    assert "synadb.db" in mods and len(mods) >= 10


# --- the command line page --------------------------------------------------------

def _cli_lines() -> list[str]:
    """The `synadb ...` commands in docs/cli.md's bash blocks."""
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith("synadb "):
                lines.append(line)
    return lines


def test_every_cli_command_is_on_the_cli_page():
    from synadb.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    documented = {line.split()[1] for line in _cli_lines()}
    assert set(sub.choices) <= documented, sorted(set(sub.choices) - documented)


# A server that blocks (studio) or needs one (mlflow-push) is not run here;
# tests/test_cli.py, test_studio.py and test_mlflow_push.py run those.
CLI_NOT_RUN = ("synadb studio ", "synadb mlflow-push ")


def test_the_cli_page_commands_run(tmp_path):
    """docs/cli.md's setup block, then each of its commands, succeed."""
    section = next(s for s in sections(ROOT / "docs" / "cli.md"))
    payload = [{"file": str(section.path), "line": b.line, "code": b.code} for b in section.blocks]
    p = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(payload), cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    bindir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    ran = 0
    for line in _cli_lines():
        if line.startswith(CLI_NOT_RUN):
            continue
        p = subprocess.run(line, shell=True, cwd=tmp_path, capture_output=True, text=True,
                           timeout=120, env=env)
        assert p.returncode == 0, f"$ {line}\n{p.stdout[-1500:]}{p.stderr[-1500:]}"
        ran += 1
    assert ran >= 10


# --- the benchmark tables ----------------------------------------------------------

def _readme_benchmarks() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text[text.index("## Benchmarks\n"):text.index("\n## ", text.index("## Benchmarks\n") + 1)]


def sync_benchmarks() -> None:
    """Copy the README's Benchmarks section to docs/benchmarks.md
    (``python tests/test_docs.py sync-benchmarks``)."""
    body = _readme_benchmarks().replace("## Benchmarks\n", "# Benchmarks\n", 1)
    (ROOT / "docs" / "benchmarks.md").write_text(
        body.rstrip() + "\n\nThese tables are copied from the README's Benchmarks section "
        "(`python tests/test_docs.py sync-benchmarks`); a test keeps the two the same.\n",
        encoding="utf-8")


def test_the_docs_benchmarks_are_the_readmes():
    readme_rows = [ln for ln in _readme_benchmarks().splitlines() if ln.startswith("|")]
    docs = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    missing = [row for row in readme_rows if row not in docs]
    assert not missing, (f"{len(missing)} README benchmark rows are not in docs/benchmarks.md; "
                         "run `python tests/test_docs.py sync-benchmarks`:\n" + missing[0])


if __name__ == "__main__" and sys.argv[1:] == ["sync-benchmarks"]:
    sync_benchmarks()
