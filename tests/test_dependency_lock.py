"""requirements.lock: every version `make`, CI and the Docker image install, and only those."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
MAKEFILE = ROOT / "Makefile"
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# Installed by `make` and the image beside the project's own requirements: pip (the venv step
# brings it to the locked version) and setuptools (the build backend, pinned with
# --build-constraint; Python 3.11's venv and base image also carry one).
TOOLS = {canonicalize_name("pip"), canonicalize_name("setuptools")}


# --- parsing -------------------------------------------------------------------------------------


def parse_lock(text: str) -> dict[NormalizedName, Version]:
    """Name -> pinned version; every line that is not a comment must be `name==version`."""
    pins: dict[NormalizedName, Version] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#=<>!~,\[\]]+)", stripped)
        assert match, f"requirements.lock line {number} is not an exact pin: {stripped!r}"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"{name} is pinned twice"
        pins[name] = Version(match.group(2))
    return pins


def lock() -> dict[NormalizedName, Version]:
    return parse_lock(LOCK.read_text())


def declared() -> list[Requirement]:
    """What pyproject asks for: build backend, runtime dependencies and every extra."""
    project = PYPROJECT["project"]
    lines = list(PYPROJECT["build-system"]["requires"]) + list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return [Requirement(line) for line in lines]


def closure(roots: list[Requirement]) -> set[NormalizedName]:
    """The distributions `roots` pull in on this Python, transitively, with their extras, from the
    installed distributions' metadata. A root or dependency that is not installed fails."""
    seen: set[NormalizedName] = set()
    todo = [(r, frozenset(r.extras)) for r in roots if not r.marker or r.marker.evaluate()]
    extras_seen: dict[NormalizedName, set[str]] = {}
    while todo:
        requirement, extras = todo.pop()
        name = canonicalize_name(requirement.name)
        known = extras_seen.setdefault(name, set())
        if name in seen and extras <= known:
            continue
        seen.add(name)
        known |= extras
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{requirement.name} is not installed: run `make` (it installs the lock)")
        for line in dist.requires or []:
            child = Requirement(line)
            wanted = (
                child.marker is None
                or child.marker.evaluate({"extra": ""})
                or any(child.marker.evaluate({"extra": e}) for e in known)
            )
            if wanted:
                todo.append((child, frozenset(child.extras)))
    return seen


# --- the lock file -------------------------------------------------------------------------------


def test_lock_parser_refuses_ranges_and_accepts_pins() -> None:
    """The parser below is not vacuous: a range, a URL or a repeated name is refused."""
    assert parse_lock("# c\nslack_bolt==1.30.0\n") == {"slack-bolt": Version("1.30.0")}
    for bad in ("slack-bolt>=1.21", "slack-bolt", "x @ https://example.invalid/x.whl", "-e ."):
        with pytest.raises(AssertionError):
            parse_lock(bad)
    with pytest.raises(AssertionError):
        parse_lock("a==1\nA==2\n")


def test_lock_header_says_how_it_was_made_and_how_to_update() -> None:
    """The header names `make lock`, the Python it resolved for, and says not to edit by hand."""
    header = [line for line in LOCK.read_text().splitlines() if line.startswith("#")]
    text = "\n".join(header)
    assert "make lock" in text and "pyproject.toml" in text
    assert re.search(r"Python 3\.\d+\.\d+", text), "the header does not say which Python"
    assert "Do not edit by hand" in text


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    """Each runtime, extra and build-system requirement of pyproject is in the lock with `==`, at a
    version its range allows."""
    pins = lock()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject's {requirement}"
        )


def test_lock_is_the_whole_closure_and_nothing_else() -> None:
    """The lock pins exactly what pyproject pulls in (transitively) plus pip and setuptools: no
    dependency goes unpinned and no stale pin stays behind."""
    needed = closure(declared()) | TOOLS
    pinned = set(lock())
    assert needed - pinned == set(), "installed but not pinned: run `make lock`"
    assert pinned - needed == set(), "pinned but nothing needs it: run `make lock`"


def test_lock_was_resolved_for_this_python_and_the_images() -> None:
    """The lock's Python (header) is the minor version running the tests and the image's base."""
    found = re.search(r"Python (3\.\d+)\.\d+", LOCK.read_text())
    assert found
    minor = found.group(1)
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == minor
    froms = [
        line.split()[1] for line in DOCKERFILE.read_text().splitlines() if line.startswith("FROM ")
    ]
    assert froms and all(image.startswith(f"python:{minor}.") for image in froms), froms


# --- what is installed ---------------------------------------------------------------------------


def test_installed_versions_are_the_locked_ones() -> None:
    """Every locked package installed here (the venv CI tests) is at its locked version, and every
    package the project needs is installed: what passes CI is what the image ships."""
    pins = lock()
    wrong = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in pins and Version(dist.version) != pins[name]:
            wrong[name] = f"installed {dist.version}, locked {pins[name]}"
    assert wrong == {}, "the venv differs from requirements.lock: run `make`"
    for name in closure(declared()) | TOOLS:
        assert metadata.version(name), name


# --- who installs from it ------------------------------------------------------------------------


def makefile_variables() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in MAKEFILE.read_text().splitlines():
        match = re.match(r"^([A-Z_]+)\s*[:?]?=\s*(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2).strip()
    return values


def makefile_rules() -> dict[str, tuple[list[str], list[str]]]:
    """Target -> (prerequisites, recipe lines), with `$(VAR)` expanded, continuations joined."""
    variables = makefile_variables()

    def expand(text: str) -> str:
        for _ in range(5):
            text = re.sub(r"\$\(([A-Z_]+)\)", lambda m: variables.get(m.group(1), m.group(0)), text)
        return text

    rules: dict[str, tuple[list[str], list[str]]] = {}
    current: list[str] | None = None
    pending = ""
    for raw in MAKEFILE.read_text().splitlines():
        if raw.startswith("\t") and current is not None:
            line = pending + raw.strip()
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            current.append(expand(line))
            pending = ""
            continue
        match = re.match(r"^([^\s:=#.][^:=]*):(?!=)(.*)$", raw)
        if match:
            targets = expand(match.group(1)).split()
            prerequisites = expand(match.group(2)).split()
            current = []
            for target in targets:
                rules[target] = (prerequisites, current)
        elif raw.strip() and not raw.startswith("#"):
            current = None
    return rules


def pip_installs(recipe: list[str]) -> list[str]:
    return [part for line in recipe for part in re.split(r"&&|;", line) if "pip install" in part]


def test_makefile_installs_the_venv_from_the_lock() -> None:
    """The venv step depends on the lock (a changed lock re-installs) and every pip install in it,
    pip's own included, is constrained by the lock; the project build pins its backend too."""
    rules = makefile_rules()
    stamps = [t for t, (_, recipe) in rules.items() if any("-e '.[test]'" in r for r in recipe)]
    assert len(stamps) == 1, "no single rule installs the project with its test extra"
    prerequisites, recipe = rules[stamps[0]]
    assert "requirements.lock" in prerequisites
    installs = pip_installs(recipe)
    assert installs and any(re.search(r"install\b.*\bpip\b", i) for i in installs), installs
    for install in installs:
        assert re.search(r"(--constraint|-c) requirements\.lock\b", install), install
    editable = [i for i in installs if "-e '.[test]'" in i]
    assert editable and "--build-constraint requirements.lock" in editable[0]


def test_make_lock_resolves_afresh_from_pyproject() -> None:
    """`make lock` writes requirements.lock from a throwaway venv that never reads the old lock."""
    rules = makefile_rules()
    assert "lock" in rules, "no `make lock`"
    recipe = " ".join(rules["lock"][1])
    assert "mktemp -d" in recipe and "-m venv" in recipe
    assert "pyproject.toml" in recipe and "pip freeze --all" in recipe
    for install in pip_installs(rules["lock"][1]):
        assert "requirements.lock" not in install, install
    assert re.search(r">\s*\"?requirements\.lock", recipe)


def test_dockerfile_installs_from_the_lock() -> None:
    """The image copies the lock and each of its pip installs is constrained by it."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    copies = [line for line in text.splitlines() if line.startswith("COPY ")]
    assert any("requirements.lock" in line.split()[1:-1] for line in copies), copies
    runs = [line for line in text.splitlines() if line.startswith("RUN ")]
    installs = [part for run in runs for part in run.split("&&") if "pip install" in part]
    assert installs
    for install in installs:
        assert re.search(r"(--constraint|-c) requirements\.lock\b", install), install
    project = [i for i in installs if re.search(r"\s\.\s*$", i)]
    assert project and "--build-constraint requirements.lock" in project[0], installs
