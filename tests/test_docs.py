"""README.md and docs/: size and first screen of the README, links, paths and names that must exist.

The configuration reference (docs/configuration.md, .env.example) is checked against the code in
tests/test_config.py.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
PAGE_IDS = [str(page.relative_to(REPO)) for page in PAGES]

README_LIMIT_BYTES = 15 * 1024
FIRST_SCREEN_LINES = 40
INSTALL_AND_START = "python3 -m venv .venv && .venv/bin/pip install -e '.[embedded]' && .venv/bin/jobnode dev"
# Where repository paths written in backticks must exist.
PATH_ROOTS = ("jobnode/", "tools/", "scripts/", "tests/", "election/", "configs/", "monitoring/", "docs/", ".ci/")


def text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def without_code_blocks(markdown: str) -> str:
    return re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)


def code_lines(markdown: str) -> list[str]:
    """The lines inside fenced code blocks, in order."""
    inside, found = False, []
    for line in markdown.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif inside:
            found.append(line.strip())
    return found


def anchors(markdown: str) -> set[str]:
    """The fragment ids a renderer gives the page's headings (lower case, punctuation dropped)."""
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", without_code_blocks(markdown), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


# --- the README is a first read ---


def test_readme_is_at_most_15_kb() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT_BYTES, f"README.md is {size} bytes; move detail into docs/"


def test_readme_gives_install_and_test_commands_on_its_first_screen() -> None:
    first_screen = text(README).splitlines()[:FIRST_SCREEN_LINES]
    assert any(line.startswith(INSTALL_AND_START) for line in first_screen), \
        "the command that installs into .venv and starts `jobnode dev` must be within the first 40 lines"
    assert "scripts/test" in first_screen, "the test command (`scripts/test`) must be within the first 40 lines"


def test_readme_activates_the_venv_before_using_jobnode() -> None:
    # The install line puts `jobnode` into .venv/bin only: a later bare `jobnode ...` needs the venv active.
    commands = code_lines(text(README))
    first_bare = next((i for i, line in enumerate(commands) if line.startswith("jobnode ")), None)
    if first_bare is not None:
        assert ". .venv/bin/activate" in commands[:first_bare]


def test_readme_does_not_carry_its_own_configuration_table() -> None:
    from jobnode.core.settings import VARIABLES

    names = {variable.name for variable in VARIABLES}
    rows = re.findall(r"^\| `([A-Z_]+)` \|", text(README), flags=re.M)
    assert not names & set(rows), "the configuration table lives in docs/configuration.md only"
    assert "docs/configuration.md" in text(README)


# --- the project speaks of itself only ---


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_docs_do_not_cite_an_outside_specification(page: Path) -> None:
    assert "SPEC" not in text(page)


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_docs_do_not_mention_removed_commands_or_paths(page: Path) -> None:
    body = text(page)
    for stale in ("jobnode bench", "jobnode/lua/", "tests/history.py", "tls-and-rate-limits.md"):
        assert stale not in body, f"{page.name} mentions {stale!r}"


def test_code_does_not_cite_an_outside_specification() -> None:
    cited = []
    for root in ("jobnode", "tools", "scripts"):
        for path in sorted((REPO / root).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if re.search(r"\bSPEC\b", line):
                    cited.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not cited, "say it in the code's own words instead:\n" + "\n".join(cited)


# --- links, paths and names resolve ---


def relative_links(page: Path) -> list[str]:
    links = re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", without_code_blocks(text(page)))
    return [link for link in links if not re.match(r"[a-z][a-z0-9+.-]*:", link)]


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_relative_links_point_at_existing_files_and_headings(page: Path) -> None:
    broken = []
    for link in relative_links(page):
        target, _, fragment = link.partition("#")
        path = (page.parent / unquote(target)).resolve() if target else page
        if not path.exists():
            broken.append(f"{link}: no such file")
        elif fragment and path.suffix == ".md" and fragment not in anchors(text(path)):
            broken.append(f"{link}: no heading #{fragment} in {path.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_readme_links_every_page_under_docs() -> None:
    linked = {(README.parent / link.partition("#")[0]).resolve() for link in relative_links(README)}
    assert not [page.name for page in DOCS if page.resolve() not in linked]


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_repository_paths_in_backticks_exist(page: Path) -> None:
    missing = []
    for span in re.findall(r"`([^`\s]+)`", text(page)):
        path = span.split("::")[0].rstrip(".,:;")
        if not path.startswith(PATH_ROOTS) or any(c in path for c in "<{["):
            continue
        exists = any(REPO.glob(path)) if "*" in path else (REPO / path).exists()
        if not exists:
            missing.append(path)
    assert not missing, f"{page.relative_to(REPO)} names paths that do not exist: {missing}"


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
            break
        except ModuleNotFoundError:
            continue
    else:
        return False
    for attribute in parts[cut:]:
        if not hasattr(found, attribute):
            return False
        found = getattr(found, attribute)
    return True


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_python_names_in_backticks_exist(page: Path) -> None:
    names = re.findall(r"`(jobnode(?:\.\w+)+)(?:\([^`]*\))?`", text(page))
    assert not [name for name in names if not resolves(name)]


def test_cli_environment_variables_are_documented() -> None:
    used = set()
    for path in (REPO / "jobnode").rglob("*.py"):
        used |= set(re.findall(r"[\"'](JOBNODE_[A-Z_]+)[\"']", path.read_text(encoding="utf-8")))
    cli = text(REPO / "docs" / "cli.md")
    assert used, "the CLI reads JOBNODE_URL and friends; the pattern above no longer finds them"
    assert not [name for name in sorted(used) if name not in cli]


def test_readme_processor_import_line_works() -> None:
    # The README's import line for processor authors.
    line = next(line for line in text(README).splitlines() if line.startswith("from jobnode.processors import"))
    exec(line, {})
