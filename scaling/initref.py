"""Where a run's weights start: the one parser of a run spec's ``init`` field.

    random            fresh weights from the shape and the seed
    run:<run_id>      the ``model/`` folder of a finished run of the same sweep (a text LM)
    <folder>          a local Hugging Face ``save_pretrained`` folder (absolute, or relative to the cwd)
    <org>/<name>      a Hugging Face hub id (loaded through ``from_pretrained`` and the local HF cache)

A string that names an existing folder is a local folder, even when it looks like a hub id.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from scaling.errors import ConfigError

KINDS = ("random", "run", "local", "hub")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$")


@dataclass(frozen=True)
class InitRef:
    kind: str
    value: str = ""  # the run id, the folder or the hub id

    @classmethod
    def parse(cls, text, *, source: str | None = None, field: str = "init") -> "InitRef":
        if not isinstance(text, str) or not text.strip():
            raise ConfigError("must be 'random', 'run:<run_id>', a local model folder or a hub id",
                              source=source, field=field, value=text)
        text = text.strip()
        if text == "random":
            return cls("random")
        if text.startswith("run:"):
            rid = text[4:]
            if not _RUN_ID.match(rid) or ".." in rid:
                raise ConfigError("run:<run_id> needs a run id (letters, digits, '.', '_', '+', '-')",
                                  source=source, field=field, value=text)
            return cls("run", rid)
        if _HUB_ID.match(text) and not Path(text).exists():
            return cls("hub", text)
        return cls("local", text)

    def __str__(self) -> str:
        return {"random": "random", "run": f"run:{self.value}"}.get(self.kind, self.value)

    @property
    def is_random(self) -> bool:
        return self.kind == "random"

    @property
    def run_id(self) -> str | None:
        """The run this init depends on (``run:<id>``), else None."""
        return self.value if self.kind == "run" else None

    @property
    def external(self) -> bool:
        """A text LM from outside the sweep (local folder or hub id)."""
        return self.kind in ("local", "hub")

    def source(self, runs_root: str | Path) -> str | None:
        """What ``from_pretrained`` loads: the model folder of ``run:<id>`` under ``runs_root``, the local
        folder, the hub id; None for random."""
        if self.kind == "random":
            return None
        if self.kind == "run":
            return str(Path(runs_root) / self.value / "model")
        return self.value
