"""The Dockerfile and skaffold.yaml checked against the repository: every path, image name,
module, executable and value key they name must exist, and they must agree with the chart
and with the local base images scripts/images builds (tests/images builds them for real)."""

from __future__ import annotations

import importlib.util
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from images.base import PythonBase, UvImage

from tests.chart.conftest import CHART, containers, one, render, template_text

ROOT = CHART.parents[1]
DOCKERFILE = ROOT / "Dockerfile"
SKAFFOLD = ROOT / "skaffold.yaml"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def args_defaults() -> dict[str, str]:
    """ARG name -> default."""
    return dict(a.split("=", 1) for i, a in instructions() if i == "ARG" and "=" in a)


def copies() -> list[list[str]]:
    """Sources of every COPY from the build context (not --from another stage)."""
    out = []
    for instruction, rest in instructions():
        if instruction == "COPY" and "--from=" not in rest:
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            out.append(parts[:-1])
    return out


def dockerignored() -> set[str]:
    """Top-level names .dockerignore leaves out of the build context."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


# --- Dockerfile ---------------------------------------------------------------------------


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    sources = [s for group in copies() for s in group]
    assert sources, "the Dockerfile should copy the project"
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source.split("/")[0] not in dockerignored(), source


def test_packages_the_wheel_builds_are_all_copied() -> None:
    copied = {s for group in copies() for s in group}
    packages = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    for package in packages:
        assert package.split("/")[0] in copied, package
    assert PYPROJECT["project"]["readme"] in copied


def test_base_image_is_a_pinned_slim_python_of_the_project_minor() -> None:
    base = args_defaults()["PYTHON_IMAGE"]
    minor = re.search(r"<3\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert minor is not None
    assert base.startswith(f"python:3.{int(minor.group(1)) - 1}")
    assert "slim" in base and ":latest" not in base
    froms = [rest for i, rest in instructions() if i == "FROM"]
    assert froms.count("${PYTHON_IMAGE} AS build") == 1
    assert froms.count("${PYTHON_IMAGE} AS runtime") == 1


def test_uv_image_is_the_uv_release_the_makefile_pins() -> None:
    pinned = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert pinned is not None
    assert args_defaults()["UV_IMAGE"].endswith(f":{pinned.group(1)}")


def test_dependencies_install_frozen_from_the_lock_without_dev_groups() -> None:
    syncs = [rest for i, rest in instructions() if i == "RUN" and "uv sync" in rest]
    assert len(syncs) == 2
    for sync in syncs:
        assert {"--frozen", "--no-dev", "--no-default-groups"} <= set(sync.split())


def test_runtime_user_is_non_root_and_matches_the_chart() -> None:
    users = [rest for i, rest in instructions() if i == "USER"]
    assert users == ["10001:10001"]
    security = VALUES["podSecurityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (10001, 10001)


def test_no_healthcheck_kubernetes_probes_instead() -> None:
    assert [i for i, _ in instructions() if i == "HEALTHCHECK"] == []


def test_default_command_is_the_charts_api_command() -> None:
    (cmd,) = [rest for i, rest in instructions() if i == "CMD"]
    api = containers(one(render(), "Deployment", "-api"))[0]
    assert yaml.safe_load(cmd) == api["command"]


def chart_commands() -> list[list[str]]:
    """The command of every container the chart can render."""
    docs = render(values=[CHART / "ci" / "all-features-values.yaml"])
    return [c["command"] for d in docs if d["kind"] in ("Deployment", "Job") for c in containers(d)]


def test_every_chart_command_runs_an_executable_of_a_runtime_dependency() -> None:
    runtime = {re.split(r"[\[<>=!~ ]", d)[0].lower() for d in PYPROJECT["project"]["dependencies"]}
    commands = chart_commands()
    assert {c[0] for c in commands} == {"gunicorn", "celery", "python", "alembic"}
    for executable in {c[0] for c in commands} - {"python"}:
        assert executable in runtime, executable
        assert (ROOT / ".venv" / "bin" / executable).exists(), executable


def named_modules(command: list[str]) -> set[str]:
    """Python modules a command names: `python:mod`, `mod:attr`, `-m mod`."""
    found = set()
    for i, token in enumerate(command):
        if token.startswith("python:"):
            found.add(token.removeprefix("python:"))
        elif re.fullmatch(r"[a-z_][\w.]*:[a-z_]\w*", token):
            found.add(token.split(":")[0])
        elif token == "-m" and command[0] == "python":
            found.add(command[i + 1] + ".__main__")
    return found


def test_every_module_an_entry_command_names_exists() -> None:
    (cmd,) = [rest for i, rest in instructions() if i == "CMD"]
    modules = set().union(*(named_modules(c) for c in [*chart_commands(), yaml.safe_load(cmd)]))

    assert modules == {"app.gunicorn_conf", "app.wsgi", "app.worker", "sapi_operator.__main__"}
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module


def test_migrations_are_in_the_image_where_alembic_looks() -> None:
    copied = {s for group in copies() for s in group}
    assert {"alembic.ini", "migrations"} <= copied
    assert "script_location = %(here)s/migrations" in (ROOT / "alembic.ini").read_text()


# --- skaffold.yaml -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def skaffold() -> dict[str, Any]:
    """The parsed skaffold.yaml."""
    data: dict[str, Any] = yaml.safe_load(SKAFFOLD.read_text())
    return data


def test_skaffold_builds_the_image_the_chart_deploys(skaffold: dict[str, Any]) -> None:
    (artifact,) = skaffold["build"]["artifacts"]
    assert artifact["image"] == VALUES["image"]["repository"]
    assert (ROOT / artifact["context"] / artifact["docker"]["dockerfile"]) == DOCKERFILE


def test_skaffold_deploys_the_chart_with_its_image(skaffold: dict[str, Any]) -> None:
    (release,) = skaffold["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"] / "Chart.yaml").exists()
    suffix = re.sub(r"[^A-Za-z0-9]", "_", skaffold["build"]["artifacts"][0]["image"])
    templates = release["setValueTemplates"]
    assert templates["image.repository"] == f"{{{{.IMAGE_REPO_{suffix}}}}}"
    assert f"IMAGE_TAG_{suffix}" in templates["image.tag"]


def has_key(values: dict[str, Any], dotted: str) -> bool:
    """True when `a.b.c` names a key of values.yaml."""
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def profile_values(skaffold: dict[str, Any], name: str) -> dict[str, Any]:
    """setValues a profile patches in."""
    (profile,) = [p for p in skaffold["profiles"] if p["name"] == name]
    found: dict[str, Any] = {}
    for patch in profile.get("patches", []):
        if patch["path"].endswith("/setValues"):
            found.update(patch["value"])
        if patch["path"].endswith("/valuesFiles"):
            for file in patch["value"]:
                assert (ROOT / file).exists(), file
    return found


def profile_values_files(skaffold: dict[str, Any], name: str) -> list[Path]:
    """valuesFiles a profile patches in."""
    (profile,) = [p for p in skaffold["profiles"] if p["name"] == name]
    patches = [p for p in profile.get("patches", []) if p["path"].endswith("/valuesFiles")]
    return [ROOT / file for patch in patches for file in patch["value"]]


def test_skaffold_has_thin_dev_prod_and_devcluster_profiles(skaffold: dict[str, Any]) -> None:
    assert [p["name"] for p in skaffold["profiles"]] == ["dev", "prod", "devcluster"]
    release = skaffold["deploy"]["helm"]["releases"][0]
    keys = list(release["setValueTemplates"])
    for name in ("dev", "prod", "devcluster"):
        keys += list(profile_values(skaffold, name))
    (devcluster,) = [p for p in skaffold["profiles"] if p["name"] == "devcluster"]
    for patch in devcluster["patches"]:
        if patch["path"].endswith("/setValueTemplates"):
            keys += list(patch["value"])
    assert [k for k in keys if not has_key(VALUES, k)] == []


@pytest.mark.parametrize("profile", ["dev", "prod", "devcluster"])
def test_each_profile_renders_with_the_chart_schema(skaffold: dict[str, Any], profile: str) -> None:
    sets = [f"{k}={v}" for k, v in profile_values(skaffold, profile).items()]
    sets += ["image.repository=registry.example.com/structured-api", "image.tag=abc123"]

    result = template_text(values=profile_values_files(skaffold, profile), set_values=sets)

    assert result.returncode == 0


# --- the local base images (scripts/images) ------------------------------------------------


def build_stage_env() -> dict[str, str]:
    """ENV of the build stage (between `AS build` and the next FROM)."""
    env: dict[str, str] = {}
    stage = None
    for instruction, rest in instructions():
        if instruction == "FROM":
            stage = rest.split()[-1]
        elif instruction == "ENV" and stage == "build":
            env.update(pair.split("=", 1) for pair in rest.split())
    return env


def test_the_local_python_base_provides_the_interpreter_the_venv_points_at() -> None:
    # The official image has python3.11 in /usr/local/bin; the Debian-built stand-in links
    # it there (scripts/images/base.py), so the venv works in both.
    spec = PythonBase()

    assert build_stage_env()["UV_PYTHON"] == spec.interpreter
    assert args_defaults()["PYTHON_IMAGE"].startswith(f"python:{spec.python}-slim-{spec.suite}")
    assert args_defaults()["UV_IMAGE"].endswith(f":{UvImage().version}")


def test_only_the_build_stage_trusts_the_images_ca_store() -> None:
    # UV_SYSTEM_CERTS lets a build behind a TLS-inspecting proxy mount that proxy's bundle
    # (scripts/images/app.py); the runtime image must not inherit it.
    runtime_env = [rest for i, rest in instructions() if i == "ENV" and "UV_SYSTEM_CERTS" in rest]

    assert build_stage_env()["UV_SYSTEM_CERTS"] == "1"
    assert len(runtime_env) == 1
