"""The report package's error type."""

from palindrome_lens.errors import PalindromeLensError


class ReportError(PalindromeLensError):
    """A page, section or figure cannot be rendered as asked (missing label, bad id, bad shape)."""
