"""Reading a user's text and YAML files, with one clear InputError for every way it can fail."""

from __future__ import annotations

import os
from pathlib import Path

from ar_guide.errors import InputError


def read_text(path: str | os.PathLike, what: str) -> str:
    """The UTF-8 text of ``path``; InputError "<what> not found" or "cannot read <what>: ..."."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found", path=path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read {what}: not UTF-8 text (byte {exc.start})", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror or exc}", path=path) from None


def parse_yaml(text: str, path: str | os.PathLike):
    """YAML (safe subset) where a key given twice is an error rather than silently overwritten.

    InputError names the file and the line and column of the problem.
    """
    import yaml

    class _StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            if isinstance(key, (list, dict)):
                continue  # reported as a wrong key type by the caller's validation
            if key in seen:
                mark = key_node.start_mark
                raise InputError(f"key {key!r} appears twice (line {seen[key]} and line "
                                 f"{mark.line + 1}); YAML would keep only the last", path=path)
            seen[key] = key_node.start_mark.line + 1
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    _StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "syntax error"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InputError(f"not valid YAML: {problem}{where}", path=path) from None


def load_yaml(path: str | os.PathLike, what: str):
    """:func:`read_text` then :func:`parse_yaml`."""
    return parse_yaml(read_text(path, what), path)
