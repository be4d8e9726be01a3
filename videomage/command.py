"""The interface of a ``videomage`` CLI sub-command that a plugin registers."""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from typing import ClassVar

__all__ = ["Command"]


class Command(ABC):
    """A ``videomage`` CLI sub-command."""

    name: ClassVar[str]
    help: ClassVar[str] = ""

    @abstractmethod
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the command's flags."""

    @abstractmethod
    def run(self, args: argparse.Namespace) -> int:
        """Run the command; return the process exit code."""
