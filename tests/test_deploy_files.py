"""The deployment files, checked statically: no container engine or systemd needed."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
UNIT = ROOT / "deploy" / "close-account-bot.service"
GUIDE = ROOT / "deploy" / "README.md"

# --- parsing -------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends in a continuation line"
    return instructions


def instruction_args(keyword: str) -> list[str]:
    return [args for kw, args in dockerfile() if kw == keyword]


def exec_form(keyword: str) -> list[str]:
    """The last `keyword` in JSON (exec) form, as Docker reads it."""
    found = instruction_args(keyword)
    assert found, f"no {keyword} in the Dockerfile"
    value = json.loads(found[-1])
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def unit() -> dict[str, list[tuple[str, str]]]:
    """Section name -> (key, value) pairs in order; repeated keys are kept, as systemd does."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in UNIT.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        assert not stripped.endswith("\\"), "keep unit lines unwrapped, they are simpler to check"
        if stripped.startswith("[") and stripped.endswith("]"):
            current = sections.setdefault(stripped[1:-1], [])
            continue
        assert current is not None, f"{stripped!r} is outside any section"
        key, sep, value = stripped.partition("=")
        assert sep, f"{stripped!r} is not key=value"
        current.append((key.strip(), value.strip()))
    return sections


def service(key: str) -> list[str]:
    return [v for k, v in unit()["Service"] if k == key]


def one(key: str) -> str:
    [value] = service(key)
    return value


def console_script() -> str:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert len(scripts) == 1, scripts
    return str(next(iter(scripts)))


def guide_storage_paths(root: str) -> list[PurePosixPath]:
    """The `[storage] path` values under `root` that deploy/README.md tells operators to use."""
    return [
        PurePosixPath(p) for p in re.findall(r'path = "(' + root + r'[^"]*)"', GUIDE.read_text())
    ]


# --- Dockerfile ----------------------------------------------------------------------------------


EXACT_BASE = re.compile(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?")


def test_base_image_is_an_exact_python_311_slim_tag() -> None:
    """Every stage builds on slim Python 3.11 named by patch release and Debian suite (optionally
    a digest), never a floating tag like `python:3.11-slim` that moves under a rebuild."""
    images = [args.split()[0] for args in instruction_args("FROM")]
    assert images, "no FROM"
    for image in images:
        assert EXACT_BASE.fullmatch(image), f"{image} is not an exact python:3.11.N-slim-SUITE tag"
    for floating in ("python:3.11-slim", "python:3.11.17-slim", "python:3.11-slim-bookworm"):
        assert not EXACT_BASE.fullmatch(floating), floating


def test_guide_names_the_base_image_the_dockerfile_uses() -> None:
    """deploy/README.md names the Dockerfile's exact base tag and how to pin its digest."""
    [image] = [args.split()[0] for args in instruction_args("FROM")]
    tag = image.split("@")[0]
    text = GUIDE.read_text()
    assert f"`{tag}`" in text, f"deploy/README.md does not name {tag}"
    assert f"docker buildx imagetools inspect {tag}" in text


def test_runs_as_a_dedicated_non_root_user() -> None:
    """The last USER is not root, comes after every RUN, and is the user the image creates."""
    instructions = dockerfile()
    users = [i for i, (kw, _) in enumerate(instructions) if kw == "USER"]
    assert users, "no USER: the bot would run as root"
    last = users[-1]
    user = instructions[last][1].split(":")[0]
    assert user not in ("root", "0")
    runs = [i for i, (kw, _) in enumerate(instructions) if kw == "RUN"]
    assert max(runs) < last, "a RUN after USER would tempt someone to switch back to root"
    created = " ".join(instruction_args("RUN"))
    flag = "--uid " if user.isdigit() else ""
    assert re.search(rf"useradd\b[^&;]*\s{flag}{user}\b", created), "USER is not created"


def test_installs_the_app_without_dev_extras() -> None:
    """The image installs the project with `pip install .` and never the test extras."""
    runs = " ".join(instruction_args("RUN"))
    assert re.search(r"pip install (--\S+ (requirements\.lock )?)*\.(\s|$)", runs), runs
    assert "[test]" not in DOCKERFILE.read_text()
    assert not re.search(r"pip install[^&;]*-e\b", runs), "an editable install needs the source"


def test_database_on_the_data_volume() -> None:
    """/data is a VOLUME, and the guide's Docker config puts the database there."""
    volumes: list[str] = []
    for args in instruction_args("VOLUME"):
        volumes += json.loads(args) if args.startswith("[") else args.split()
    assert "/data" in volumes
    paths = guide_storage_paths("/data/")
    assert paths and all(p.parent == PurePosixPath("/data") for p in paths)


def test_entrypoint_is_the_console_script_and_cmd_runs_the_mounted_config() -> None:
    """ENTRYPOINT is pyproject's console script; CMD runs with the read-only mounted config."""
    assert exec_form("ENTRYPOINT") == [console_script()]
    assert exec_form("CMD") == ["run", "--config", "/config/close-account.toml"]


def test_http_port_is_exposed_and_stop_is_graceful() -> None:
    """Port 3000 is exposed for HTTP mode and `docker stop` sends SIGINT (a clean shutdown)."""
    assert instruction_args("EXPOSE") == ["3000"]
    assert instruction_args("STOPSIGNAL") == ["SIGINT"]


def healthcheck_command() -> list[str]:
    [args] = instruction_args("HEALTHCHECK")
    json_part = args[args.index("CMD ") + 4 :]
    command = json.loads(json_part)
    assert isinstance(command, list)
    return [str(part) for part in command]


def test_healthcheck_asks_healthz_with_python() -> None:
    """The HEALTHCHECK asks GET /healthz on the exposed port with Python (slim has no curl)."""
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert "http://127.0.0.1:3000/healthz" in command[2]
    assert not any(tool in " ".join(command) for tool in ("curl", "wget"))


class _Healthz(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        ok = self.path == "/healthz" and self.status == 200
        self.send_response(200 if ok else 503)
        self.end_headers()
        self.wfile.write(json.dumps({"ok": ok}).encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def healthz_server(status: int) -> Iterator[int]:
    handler = type("Handler", (_Healthz,), {"status": status})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_command_passes_on_200_and_fails_on_503(status: int, healthy: bool) -> None:
    """The HEALTHCHECK's Python one-liner really runs: exit 0 on 200, non-zero while starting."""
    code = healthcheck_command()[2]
    with healthz_server(status) as port:
        local = code.replace("127.0.0.1:3000", f"127.0.0.1:{port}")
        result = subprocess.run(
            [sys.executable, "-c", local], capture_output=True, timeout=30, check=False
        )
    assert (result.returncode == 0) is healthy, result.stderr.decode()


def test_every_python_package_the_image_copies_is_installed() -> None:
    """pyproject's package list names every package directory the Dockerfile copies, subpackages
    included: a non-editable `pip install .` leaves out any it does not name."""
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    copied = [w for a in instruction_args("COPY") for w in a.split()[:-1] if not w.startswith("--")]
    found = set()
    for source in copied:
        if (ROOT / source).is_dir():
            for init in (ROOT / source).rglob("__init__.py"):
                found.add(".".join(init.parent.relative_to(ROOT).parts))
    assert found, "the Dockerfile copies no Python package"
    assert found - listed == set(), "packages missing from [tool.setuptools] packages"


def test_image_copies_the_license_and_the_lock() -> None:
    """The build context has LICENSE (pyproject's license-files) and requirements.lock."""
    sources = {
        w for a in instruction_args("COPY") for w in a.split()[:-1] if not w.startswith("--")
    }
    assert {"LICENSE", "requirements.lock"} <= sources
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


# --- .dockerignore -------------------------------------------------------------------------------


def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _match(pattern: list[str], parts: list[str]) -> bool:
    """Go's filepath.Match per path segment (`*` never crosses `/`); `**` spans any segments."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_match(pattern[1:], parts[i:]) for i in range(len(parts) + 1))
    return (
        bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0]) and _match(pattern[1:], parts[1:])
    )


def ignored(path: str) -> bool:
    """Whether Docker leaves `path` out of the context: a pattern excludes the path or a parent
    of it, anchored at the context root; the last matching pattern wins (`!` re-includes)."""
    parts = list(PurePosixPath(path).parts)
    result = False
    for raw in ignore_patterns():
        negate = raw.startswith("!")
        pattern = PurePosixPath(raw.removeprefix("!")).parts
        if any(_match(list(pattern), parts[: i + 1]) for i in range(len(parts))):
            result = not negate
    return result


def test_dockerignore_keeps_venv_caches_databases_and_git_out() -> None:
    """The build context leaves out the virtualenv, caches, SQLite files, git and local secrets."""
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "bot/__pycache__/app.cpython-311.pyc",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/x",
        ".pytest_cache/v/x",
        "close-account.db",
        "close-account.db-wal",
        "close-account.db-shm",
        "close-account.db.lock",
        "bot/stray.db",
        ".env",
        "contoso.pem",
    ):
        assert ignored(path), f"{path} would be sent to the Docker build"


def test_dockerignore_keeps_everything_the_dockerfile_copies() -> None:
    """Every COPY source, and every Python file under the copied packages, is in the context."""
    sources: list[str] = []
    for args in instruction_args("COPY"):
        words = [w for w in args.split() if not w.startswith("--")]
        sources += words[:-1]
    assert {"pyproject.toml", "README.md"} <= set(sources)
    for source in sources:
        assert not ignored(source), f"COPY {source} is excluded by .dockerignore"
        if (ROOT / source).is_dir():
            for file in (ROOT / source).rglob("*.py"):
                relative = file.relative_to(ROOT).as_posix()
                if "__pycache__" not in relative:
                    assert not ignored(relative), f"{relative} is excluded by .dockerignore"


# --- systemd unit --------------------------------------------------------------------------------


def test_unit_runs_as_a_dedicated_user() -> None:
    """The service runs as its own user and group, not root."""
    user = one("User")
    assert user and user not in ("root", "0")
    assert one("Group") == user


def test_unit_runs_the_console_script_with_a_config() -> None:
    """ExecStart runs `close-account-bot run --config /absolute/path.toml`."""
    argv = shlex.split(one("ExecStart"))
    assert PurePosixPath(argv[0]).is_absolute(), "systemd wants an absolute executable"
    assert PurePosixPath(argv[0]).name == console_script()
    assert argv[1:3] == ["run", "--config"]
    config = PurePosixPath(argv[3])
    assert config.is_absolute() and config.suffix == ".toml"


def test_unit_restarts_on_failure_but_not_on_user_errors() -> None:
    """Restart=on-failure, but not after exit 2 (bad config, another instance): no use."""
    assert one("Restart") == "on-failure"
    assert one("RestartPreventExitStatus") == "2"
    assert one("KillSignal") == "SIGINT"


def test_unit_is_hardened_and_can_write_only_its_data_directory() -> None:
    """The sandbox options are on and ReadWritePaths covers the database the guide configures."""
    assert one("NoNewPrivileges") == "yes"
    assert one("ProtectSystem") == "strict"
    assert one("PrivateTmp") == "yes"
    assert one("ProtectHome") == "yes"
    assert one("CapabilityBoundingSet") == ""
    writable = {PurePosixPath(p) for v in service("ReadWritePaths") for p in v.split()}
    databases = guide_storage_paths("/var/lib/")
    assert databases, "deploy/README.md shows no systemd storage path"
    for database in databases:
        assert database.parent in writable, f"{database} is not writable under the unit"


def test_unit_reads_secrets_from_an_environment_file_only() -> None:
    """Secrets come from EnvironmentFile=; the unit sets no Environment= of its own."""
    [env_file] = service("EnvironmentFile")
    assert PurePosixPath(env_file.lstrip("-")).is_absolute()
    assert service("Environment") == []


# --- no secrets ----------------------------------------------------------------------------------

SECRET_VALUES = [
    re.compile(r"xox[abposr]-[0-9A-Za-z-]{10,}"),  # Slack bot/user tokens
    re.compile(r"xapp-\d-[0-9A-Za-z-]{10,}"),  # Slack app-level tokens
    re.compile(r"[0-9A-Za-z_.-]{3}\dQ~[0-9A-Za-z_.~-]{30,}"),  # Entra client secrets
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]
SECRET_ASSIGNMENT = re.compile(
    r"\b(SLACK_[A-Z_]+|[A-Z_]*(SECRET|TOKEN|PASSWORD)[A-Z_]*)\s*=\s*\S", re.IGNORECASE
)


def secrets_in(text: str) -> list[str]:
    found = [m.group(0) for pattern in SECRET_VALUES for m in pattern.finditer(text)]
    return found + [m.group(0) for m in SECRET_ASSIGNMENT.finditer(text)]


def test_the_secret_scan_would_catch_a_secret() -> None:
    """The scan below is not vacuous: it flags token-shaped values and secret assignments."""
    token = "xox" + "b-" + "1234567890-abcdefghij"
    assert secrets_in(f"ENV SLACK_BOT_TOKEN={token}")
    assert secrets_in("Environment=CONTOSO_SECRET=hunter2")
    assert secrets_in("abc" + "8Q~" + "x" * 34)


@pytest.mark.parametrize("path", [DOCKERFILE, UNIT, DOCKERIGNORE], ids=lambda p: p.name)
def test_no_secret_values_in_the_deployment_files(path: Path) -> None:
    """The Dockerfile, .dockerignore and unit name secret variables but never hold a value."""
    assert secrets_in(path.read_text()) == []


def test_no_secret_in_image_env_or_build_args() -> None:
    """No ENV or ARG carries a token, secret or key, since those would live in an image layer."""
    for args in instruction_args("ENV") + instruction_args("ARG"):
        assert not re.search(r"TOKEN|SECRET|PASSWORD|KEY", args, re.IGNORECASE), args


def test_guide_has_no_real_looking_secrets() -> None:
    """The deployment guide shows placeholders like `xoxb-...`, never a token-shaped value."""
    text = GUIDE.read_text()
    assert [m.group(0) for p in SECRET_VALUES for m in p.finditer(text)] == []
