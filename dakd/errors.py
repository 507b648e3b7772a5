"""The one exception type users see: its message is a complete, one-line explanation."""


class DakdError(Exception):
    """A user-facing error. The CLI prints its message and exits with code 1, without a traceback."""


class VideoError(DakdError):
    """A video that cannot be decoded (or only partly). ``kind`` names the failure class."""

    def __init__(self, path: str, kind: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.kind = kind
        self.reason = message


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an error's message (its type name when it has none), at most ``limit`` long."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:limit]
