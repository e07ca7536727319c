"""The pure parts of scripts/images: cache keys, names, the host's Debian mirror, skaffold's
environment. No buildah needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from images import base, debian, skaffold
from images.paths import archive_name, normalize_reference, uv_version


def test_python_base_key_follows_suite_and_packages_only() -> None:
    default = base.PythonBase()

    assert base.PythonBase().key() == default.key()
    assert base.PythonBase(suite="trixie").key() != default.key()
    assert base.PythonBase(packages=(*default.packages, "curl")).key() != default.key()
    assert default.ref == "localhost/python:3.11-slim-bookworm"


def test_uv_image_follows_the_makefile_pin() -> None:
    assert base.UvImage().version == uv_version()
    assert base.UvImage().ref == f"localhost/uv:{uv_version()}"
    assert base.UvImage("0.0.1").key() != base.UvImage().key()


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        ("localhost/python:3.11-slim-bookworm", "python-3.11-slim-bookworm.oci.tar"),
        ("localhost/structured-api-devdeps/redis:7", "structured-api-devdeps-redis-7.oci.tar"),
        ("docker.io/library/structured-api:abc", "docker.io-library-structured-api-abc.oci.tar"),
    ],
)
def test_archive_names_are_flat_file_names(ref: str, name: str) -> None:
    assert archive_name(ref) == name


@pytest.mark.parametrize(
    ("ref", "full"),
    [
        ("structured-api:abc", "docker.io/library/structured-api:abc"),
        ("team/structured-api:abc", "docker.io/team/structured-api:abc"),
        ("localhost/structured-api:abc", "localhost/structured-api:abc"),
        ("registry.example.com/x:1", "registry.example.com/x:1"),
        ("127.0.0.1:5000/x:1", "127.0.0.1:5000/x:1"),
    ],
)
def test_references_are_normalised_as_kubelet_asks_containerd(ref: str, full: str) -> None:
    assert normalize_reference(ref) == full


def test_the_hosts_mirror_is_read_from_deb822_and_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb-src\nURIs: http://src.example/debian\n"
        "Suites: bookworm\nComponents: main\n"
    )
    (tmp_path / "sources.list").write_text(
        "deb [signed-by=/k.gpg] http://security.example/debian-security bookworm-security main\n"
        "deb https://packages.example/apt cloud-sdk-bookworm main\n"
    )

    mirror = debian.host_mirror("bookworm", tmp_path)

    assert mirror == debian.Mirror(
        "http://mirror.example/debian", "http://security.example/debian-security"
    )
    assert "Suites: bookworm-security" in mirror.sources("bookworm")


def test_without_sources_the_mirror_is_debians(tmp_path: Path) -> None:
    assert debian.host_mirror("bookworm", tmp_path) == debian.Mirror(
        debian.DEFAULT_MIRROR, debian.DEFAULT_SECURITY
    )


def test_skaffold_build_names_the_image_as_containerd_will() -> None:
    assert skaffold.target_reference({"IMAGE": "structured-api:1a2b"}) == (
        "docker.io/library/structured-api:1a2b"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [({}, "IMAGE is not set"), ({"IMAGE": "x:1", "PUSH_IMAGE": "true"}, "no registry")],
)
def test_skaffold_build_refuses_what_it_cannot_do(env: dict[str, str], message: str) -> None:
    with pytest.raises(skaffold.SkaffoldError, match=message):
        skaffold.target_reference(env)


def test_skaffold_build_imports_where_containerd_address_says() -> None:
    env = {"CONTAINERD_ADDRESS": "/run/some/containerd.sock"}

    assert skaffold.containerd_socket(env) == "/run/some/containerd.sock"
