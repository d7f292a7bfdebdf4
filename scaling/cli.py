"""The `scaling` console command.

Every package registers its own subcommands with one function, ``register(subparsers)``: the
demo (scaling.demo), data / train / eval / generate / bench / memory / export (trainer.cli), plan / status /
run / worker / tune (sweeps.cli), fit / figures / report / power (analysis.cli). Registering only defines
arguments; heavy imports (torch, transformers, pandas, scipy) happen inside the command that
needs them, so `--help`, plan, status, fit, figures and report start without torch.

`scaling CMD ...` builds the parser of CMD's package only (:data:`COMMANDS`): registering every
package imports their CLI modules (sweeps' schema, yaml, the trainer's registries), 0.15 s that
`scaling fit` would spend before its first line of work. `scaling --help`, a bare `scaling` and an
unknown command build the full parser, so their usage and error messages list every command.

Errors: a :class:`ConfigError` (bad input) prints ``error: <file>: field '<field>': <why> (got <value>)``
and exits 2. So does an ``OSError`` of the machine rather than of the code (:data:`PATH_ERRNOS`: no
permission, a read-only file system, a full disk or quota, a file where a folder is meant and back)
that carries the path it concerns: ``error: <reason>: <path>``, so that every write (or read) error names
its file. Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from scaling.errors import ConfigError

#: The CLI modules whose ``register`` adds commands, in the order of `scaling --help`.
PACKAGES = ("scaling.demo", "trainer.cli", "sweeps.cli", "analysis.cli", "analysis.design_cli")

#: Command -> the module (one of :data:`PACKAGES`) that registers it. tests/test_architecture.py
#: checks it against what each module registers.
COMMANDS = {
    "demo": "scaling.demo",
    **dict.fromkeys(("data", "train", "eval", "generate", "bench", "memory", "export"), "trainer.cli"),
    **dict.fromkeys(("plan", "status", "run", "worker", "tune"), "sweeps.cli"),
    **dict.fromkeys(("fit", "figures", "report", "power"), "analysis.cli"),
    "design": "analysis.design_cli",
}


#: OSError numbers that say something about the machine or the paths given (not about the code): reported as
#: ``error: <reason>: <path>``, exit 2. ENOENT and EEXIST are not among them: a missing input is checked by
#: the command that reads it, and an unexpected one is more likely a bug worth its traceback.
PATH_ERRNOS = frozenset(getattr(errno, n) for n in ("EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "EFBIG",
                                                  "ENOTDIR", "EISDIR", "ENAMETOOLONG") if hasattr(errno, n))


def os_error_message(e: OSError) -> str | None:
    """``<reason>: <path>`` for an OSError of :data:`PATH_ERRNOS` that names its path, else None."""
    if e.errno not in PATH_ERRNOS or e.filename is None:
        return None
    paths = [os.fsdecode(f) for f in (e.filename, e.filename2) if f is not None]
    return f"{e.strerror or os.strerror(e.errno)}: {' -> '.join(paths)}"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `scaling` parser; with a known ``command``, only the subcommands of the module that owns it."""
    modules = (COMMANDS[command],) if command in COMMANDS else PACKAGES
    p = argparse.ArgumentParser(prog="scaling", description="Scaling-law experiments for interleaved speech-text LMs.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in modules:
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    args.cli = main  # commands that chain other commands (the demo) run them through this
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        msg = os_error_message(e)
        if msg is None:
            raise
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
