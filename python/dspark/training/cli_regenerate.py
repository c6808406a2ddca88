"""``dspark regenerate`` (registered through ``dspark.cli._COMMANDS``)."""

from dspark.training.cli import add_regenerate_parser as add_parser

__all__ = ["add_parser"]
