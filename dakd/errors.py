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
