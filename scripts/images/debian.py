"""The Debian mirror apt already uses here, and the trimming of a Debian root file system.

No base image can be pulled (no registry is reachable), so the Python base is debootstrapped
from the same mirror the host's apt reads (/etc/apt/sources.list.d/*.sources or
/etc/apt/sources.list), with the suite's -updates and -security pockets added the way
Debian's official images configure them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

APT_DIR: Final = Path("/etc/apt")
DEFAULT_MIRROR: Final = "http://deb.debian.org/debian"
DEFAULT_SECURITY: Final = "http://deb.debian.org/debian-security"
KEYRING: Final = "/usr/share/keyrings/debian-archive-keyring.gpg"

#: What Debian's slim images leave out (debuerreotype's "slimify" list): documentation
#: except licences, manuals, translations. Written to /etc/dpkg/dpkg.cfg.d/ so packages
#: installed later (the devdeps images) stay as small.
DPKG_EXCLUDES: Final = """\
# Installed by scripts/images (Debian's slim-image excludes).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
"""
#: apt keeps no .deb files and downloads no translations (as in Debian's images).
APT_CONF: Final = {
    "docker-clean": 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
    '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
    'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
    '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
    'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";\n',
    "docker-no-languages": 'Acquire::Languages "none";\n',
    "docker-autoremove-suggests": 'Apt::AutoRemove::SuggestsImportant "false";\n',
}

#: Runs inside the imported root file system: security updates, then what slim images drop.
UPGRADE_AND_TRIM: Final = """\
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get -o Acquire::Retries=3 update -qq
apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade
apt-get clean
find /usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf /usr/share/man/* /usr/share/info/* /usr/share/groff/* /usr/share/lintian \\
  /usr/share/linda /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old \\
  /var/lib/dpkg/*-old /var/log/apt/* /var/log/*.log
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
"""


@dataclass(frozen=True)
class Mirror:
    """Base URIs of the Debian archive and of its security archive."""

    debian: str
    security: str

    def sources(self, suite: str) -> str:
        """deb822 /etc/apt/sources.list.d/debian.sources, as Debian's images write it."""
        return (
            f"Types: deb\nURIs: {self.debian}\nSuites: {suite} {suite}-updates\n"
            f"Components: main\nSigned-By: {KEYRING}\n\n"
            f"Types: deb\nURIs: {self.security}\nSuites: {suite}-security\n"
            f"Components: main\nSigned-By: {KEYRING}\n"
        )


def _entries(apt_dir: Path) -> list[tuple[list[str], list[str]]]:
    """(URIs, suites) of every apt source on this machine, both file formats."""
    found: list[tuple[list[str], list[str]]] = []
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ")):
                    name, _, value = line.partition(":")
                    fields[name.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split():
                found.append((fields.get("uris", "").split(), fields.get("suites", "").split()))
    lists = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if len(words) >= 3 and words[0] == "deb":
                found.append(([words[1]], [words[2]]))
    return found


def host_mirror(suite: str, apt_dir: Path = APT_DIR) -> Mirror:
    """The mirrors the host's apt uses for `suite` and `suite-security` (Debian's otherwise)."""
    debian = security = None
    for uris, suites in _entries(apt_dir):
        if uris and suite in suites and debian is None:
            debian = uris[0]
        if uris and f"{suite}-security" in suites and security is None:
            security = uris[0]
    return Mirror(debian=debian or DEFAULT_MIRROR, security=security or DEFAULT_SECURITY)


def prepare_rootfs(rootfs: Path, *, suite: str, mirror: Mirror) -> None:
    """Make a debootstrapped tree an image: apt sources and slim settings, no host files."""
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(mirror.sources(suite))
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker").write_text(DPKG_EXCLUDES)
    for name, text in APT_CONF.items():
        (rootfs / "etc/apt/apt.conf.d" / name).write_text(text)
    # debootstrap copies the host's resolver and name; the runtime provides its own.
    for leaked in ("etc/resolv.conf", "etc/hostname"):
        (rootfs / leaked).unlink(missing_ok=True)
