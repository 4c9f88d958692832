"""One exception tree; only `cli.main` prints these."""

from __future__ import annotations


class NbciError(Exception):
    """Base of every error nbci reports to the user as one line."""


class UsageError(NbciError):
    """The command line asks for something that cannot be done."""


class ConfigError(NbciError):
    """The configuration file or a flag holds a wrong value."""


class ResultsError(NbciError):
    """A results.json (or output directory) is unreadable, malformed or untrusted."""


class TemplateError(ConfigError):
    """A report template of the user's cannot be compiled or rendered."""


class GateRuleError(ConfigError):
    """A gate rule in the configuration is invalid."""


class PublishError(NbciError):
    """Publishing to the forge failed in a way the user has to fix."""


class RunError(NbciError):
    """nbci cannot do the run here: worker processes that cannot start, an output folder
    that another run is writing."""


class Interrupted(NbciError):
    """The run was stopped by SIGINT or SIGTERM."""
