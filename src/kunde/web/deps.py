"""Annotated types for values route handlers receive by dependency injection."""

from __future__ import annotations

from litestar.di import NamedDependency

from kunde.kernel import Kernel

# Declare a handler parameter as ``kernel: KernelDep`` to receive the process's kernel.
KernelDep = NamedDependency[Kernel]
