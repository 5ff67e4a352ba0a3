"""The one exception type for mistakes a user can fix (bad path, bad field, too little memory)."""


class UserError(Exception):
    """A problem the user can act on: a one-line message plus a hint on what to do."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message
