"""``dspark prepare`` (registered through ``dspark.cli._COMMANDS``)."""

from dspark.training.cli import add_prepare_parser as add_parser

__all__ = ["add_parser"]
