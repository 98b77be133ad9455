"""Exception hierarchy for faults the user can fix (bad files, configs, models)."""

from __future__ import annotations


class EdgeAAEError(Exception):
    """Base class: a fault in input the user controls; the CLI prints it on one line."""

    exit_code = 1


class UsageError(EdgeAAEError):
    """The command line names something that does not exist or cannot be used."""

    exit_code = 2


class DataError(EdgeAAEError):
    """A data file that cannot be read as sensor readings (names file, column, line)."""


class ConfigError(EdgeAAEError):
    """A configuration file or value that fails validation (names file and key)."""


class ModelMismatchError(EdgeAAEError):
    """A model that does not fit the data or config it is used with."""


class CorruptModelError(EdgeAAEError):
    """A run directory or bundle that is incomplete, edited or from another version."""
