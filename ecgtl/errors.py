"""Errors a user can cause. Each carries a one-line message the CLI prints without a traceback."""

from __future__ import annotations


class EcgtlError(Exception):
    """Base class for user-facing errors (bad input, missing data, wrong layout)."""


class DatasetError(EcgtlError):
    """A dataset folder is missing, has the wrong layout, or a spec cannot be parsed."""


class RecordError(EcgtlError):
    """One record cannot be read; the message names the file and the problem."""


class EvaluationError(EcgtlError):
    """Inputs to a metric are malformed (shapes, NaN, labels outside {0, 1}, empty sets)."""
