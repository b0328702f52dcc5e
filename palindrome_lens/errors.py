"""The project's own error types: every expected failure is one of these, with a message that says
what is wrong and what to do, so stages exit cleanly instead of dumping a library traceback."""


class PalindromeLensError(Exception):
    """Base class for every error this project raises on purpose."""


class ParamsError(PalindromeLensError):
    """A value in params.yaml (or dvc.yaml's params list) is missing, unknown or out of range."""


class DataFileError(PalindromeLensError):
    """An input file (Parquet, JSON, safetensors, manifest) is missing, corrupt or inconsistent."""


class TokenizerError(PalindromeLensError):
    """A string cannot be encoded with the vocabulary (unknown character, too long)."""


class AnalysisError(PalindromeLensError):
    """An analysis failed one of its own checks (e.g. DLA components that do not sum to the logit difference)."""
