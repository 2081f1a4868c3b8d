"""User-facing errors: the CLI prints them as one line, without a traceback."""


class EdgepackError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""


class MissingDependencyError(EdgepackError):
    """An optional library is not installed."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed; "
            f'install it with: pip install "edgepack[{extra}]"'
        )
