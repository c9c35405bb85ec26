"""The one exception type users see: a single line saying what is wrong and what to do."""


class OnnxPruneError(Exception):
    """A user-facing failure. `str(err)` is one line; the CLI prints it and exits 1."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
