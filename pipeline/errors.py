"""One exception root for s2watch, with children that also inherit the matching builtin.

Every error a user can cause names the file, field or value at fault and what to do about it.
The CLI maps :class:`PipelineError` to exit code 2 (usage/configuration) or 1 (a run failed).
"""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error s2watch raises on purpose."""


class UsageError(PipelineError, ValueError):
    """Bad command-line arguments or parameters (exit code 2)."""


class ConfigError(PipelineError, ValueError):
    """A configuration file, environment variable or option is invalid (exit code 2)."""


class AOIError(PipelineError, ValueError):
    """An AOI file is missing or invalid.

    Parameters
    ----------
    path : str
        The file at fault (or the id that did not resolve).
    problems : list of str
        One line per problem, each naming the feature and the reason.
    """

    def __init__(self, path: str, problems: list[str] | str):
        self.path = str(path)
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{self.path}:\n{lines}")


class SourceError(PipelineError):
    """A data source failed in a way a rerun will not fix by itself."""


class SourceUnavailable(SourceError, OSError):
    """A data source could not be reached or kept failing (temporary; a rerun may succeed)."""


class AuthenticationError(SourceError, PermissionError):
    """Credentials were rejected by the data source."""


class QuotaError(SourceError):
    """The run would exceed, or has exceeded, a processing or request budget."""


class DataError(SourceError, ValueError):
    """Data read from a source is corrupt, truncated or lacks required bands."""


class NoDataError(SourceError, LookupError):
    """No usable acquisitions were found for the AOI and time window."""


class LockHeldError(PipelineError, RuntimeError):
    """Another run holds the lock of this AOI (exit code 75)."""


class StateError(PipelineError, RuntimeError):
    """The monitoring state database is unusable."""


class CloudyScene(UserWarning):
    """An acquisition was dropped because too little of the AOI was clear."""


class MissingOptionalDependency(PipelineError, ImportError):
    """An optional extra is needed: the message says which ``pip install`` brings it."""


class OutputError(PipelineError, ValueError):
    """A detection result cannot be written: arrays or objects disagree with the grid or contracts."""
