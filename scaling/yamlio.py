"""The one reader of the project's YAML files (sweep files, a run's spec.yaml, a tuning study's tuned.yaml).

``yaml.safe_load`` plus the checks a config file needs, each failure a :class:`ConfigError` that names the
file (and the line where there is one), never a traceback or a silent surprise:

- the file must be UTF-8 text (a UTF-8 byte-order mark is allowed);
- a parse error names the line and column;
- a key given twice in one mapping is refused (safe_load keeps the last one silently); keys merged in with
  ``<<: *anchor`` may be overridden, as YAML intends;
- anchors and aliases are allowed, but the document they expand to may hold at most :data:`MAX_NODES`
  nodes, and an alias may not contain itself. ``safe_load`` shares an aliased node instead of copying it,
  so a "billion laughs" file loads in microseconds and then blows up whatever walks it (``repr`` of a
  ConfigError's value, ``str(name)``, a JSON dump): nine nested aliases of nine items expand to 387
  million nodes;
- nesting deeper than Python's recursion limit is refused instead of raising RecursionError;
- a float written with an exponent and no dot (``1e-3``, ``1e400``) is a float, as in YAML 1.2 (YAML 1.1
  reads it as a string, which callers then had to convert by hand; ``1e400`` became ``inf`` unchecked).

``yaml`` is imported on first use, not at module import: `scaling fit` reaches scaling.spec and starts
without yaml.
"""
from __future__ import annotations

import re
from pathlib import Path

from scaling.errors import ConfigError

#: The most nodes (scalars, lists, mappings) a document may expand to once its aliases are followed. The
#: largest shipped sweep file has a few hundred, a run's spec.yaml about a hundred; 100,000 leaves room
#: for any hand-written config while an alias bomb (millions to billions of nodes) is refused at once.
MAX_NODES = 100_000

# YAML 1.1's float pattern (PyYAML's resolver) plus YAML 1.2's exponent floats without a dot (1e-3, 1E+5).
_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X)

_LOADER = None


def _loader_class():
    """A SafeLoader whose float resolver also reads exponent floats without a dot (built once, on first use)."""
    global _LOADER
    if _LOADER is None:
        import yaml

        class CheckedLoader(yaml.SafeLoader):
            pass

        # a copy of SafeLoader's resolvers with the float pattern replaced in place (never SafeLoader's own table)
        float_tag = "tag:yaml.org,2002:float"
        table = {ch: [(tag, _FLOAT if tag == float_tag else regexp) for tag, regexp in resolvers]
                 for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
        for ch in "-+0123456789.":
            if all(tag != float_tag for tag, _ in table.setdefault(ch, [])):
                table[ch].insert(0, (float_tag, _FLOAT))
        CheckedLoader.yaml_implicit_resolvers = table
        _LOADER = CheckedLoader
    return _LOADER


def read_text(path: str | Path, *, what: str = "file") -> str:
    """The file's text; a file that is missing, unreadable or not UTF-8 is a ConfigError naming it (the
    project's one checked text reader, scaling.textio)."""
    from scaling.textio import read_text as checked

    return checked(path, what=what)


def load(path: str | Path, *, what: str = "file"):
    """The YAML document of ``path``, checked (see the module docstring)."""
    return loads(read_text(path, what=what), source=str(path))


def loads(text: str, *, source: str | None = None):
    """The YAML document of ``text``; ``source`` names it in errors."""
    import yaml

    try:
        loader = _loader_class()(text)
    except yaml.reader.ReaderError as e:  # a control character (NUL, ESC...) anywhere in the text
        line = text[:e.position].count("\n") + 1
        raise ConfigError(f"not valid YAML at line {line}: character {e.character:#06x} is not allowed in YAML text",
                          source=source) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_node(node, source)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(p for p in (e.context, e.problem) if p)
        raise ConfigError(f"not valid YAML{where}: {what}", source=source) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {e}", source=source) from None
    except ValueError as e:  # an int of more than 4300 digits (Python's limit on int(str))
        raise ConfigError(f"not valid YAML: a value cannot be read ({str(e).split(';')[0]})", source=source) from None
    except RecursionError:
        raise ConfigError("nests lists or mappings too deeply for a config file", source=source) from None
    finally:
        loader.dispose()


def _check_node(root, source) -> None:
    """Duplicate keys, recursive aliases, and the document's size once its aliases are expanded."""
    import yaml

    sizes: dict[int, int] = {}  # id(node) -> nodes it expands to (aliases share node objects)
    open_: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_:
            line = node.start_mark.line + 1
            raise ConfigError(f"an alias at or after line {line} contains itself (a recursive structure is not "
                              "a config value)", source=source)
        open_.add(key)
        n = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                n += size(child)
        elif isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    ident = (k.tag, k.value)
                    if ident in seen:
                        raise ConfigError(f"is given twice in one mapping (line {seen[ident]} and line "
                                          f"{k.start_mark.line + 1}); keep one", source=source, field=str(k.value))
                    seen[ident] = k.start_mark.line + 1
                n += size(k) + size(v)
        open_.discard(key)
        sizes[key] = n
        if n > MAX_NODES:
            raise ConfigError(f"expands to more than {MAX_NODES:,} values once its aliases (*name) are followed "
                              f"(at line {node.start_mark.line + 1}): refused as an alias bomb", source=source)
        return n

    size(root)
