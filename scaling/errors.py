"""The one exception type that user-facing commands turn into a clean non-zero exit."""


class ConfigError(ValueError):
    """Bad user input: the message names the file, the field and the offending value."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None, value=None):
        self.reason = message  # the bare message, for re-raising with a fuller source and field
        parts = []
        if source:
            parts.append(str(source))
        if field:
            parts.append(f"field '{field}'")
        prefix = ": ".join(parts)
        if value is not None:
            message = f"{message} (got {value!r})"
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.source, self.field, self.value = source, field, value


class Stopped(BaseException):
    """SIGTERM or SIGHUP reached a process training runs (a scheduler's time limit, `kill`): the run in
    progress is left resumable (state 'pending', its lease released) and the process ends. A
    BaseException, so that no ``except Exception`` on the way records it as a failure."""

    def __init__(self, signum: int):
        import signal

        self.signum, self.name = signum, signal.Signals(signum).name
        super().__init__(self.name)
