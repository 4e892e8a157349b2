"""Loading a space: YAML file + ``--set`` overrides -> schema validation -> domain checks -> bundle.

Everything that can be checked before training is checked here (the file's types and values) or by
:func:`search.space.resolve` (layers, group counts, seeds, trainer keys, the data) and reported as
one :class:`SpaceError` line naming the key -- nothing is written before that.
"""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ValidationError

from ._schema import RUN_NAME_PATTERN, SearchSpace, SpaceError

if TYPE_CHECKING:
    from ._resolve import ResolvedSpace

__all__ = ["load_space", "read_space", "profile_names", "parse_override", "apply_override"]


class _SpaceLoader(yaml.SafeLoader):
    """PyYAML's safe loader with two YAML 1.2 habits users expect of a config file:

    * ``5e-2``, ``1e3``, ``-2E+4`` are numbers (YAML 1.1, which PyYAML follows, reads a mantissa
      without a dot as a string, so ``lr: 5e-2`` was refused as "not a number");
    * a key given twice in one mapping is an error (YAML 1.2 requires unique keys; PyYAML silently
      keeps the last one, so a second ``name:`` or ``trainer:`` block would replace the first).
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: the base constructor reports it
                break
            if first is not key_node.start_mark:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {first.line + 1})", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


_SpaceLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml(text: str) -> Any:
    """``text`` parsed as YAML by :class:`_SpaceLoader` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=_SpaceLoader)  # noqa: S506 -- a SafeLoader subclass


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"search.trials=20"`` -> (``["search", "trials"]``, ``20``); values are parsed as YAML.

    Raises:
        SpaceError: not ``key.path=value``, or an empty path segment.
    """
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpaceError("--set", f"expected key.path=value, got {item!r}")
    try:
        value = _yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # a plain string that YAML cannot parse (e.g. "a: b")
    parts = key.split(".")
    if any(not p for p in parts):
        raise SpaceError("--set", f"malformed key {key!r}")
    return parts, value


def apply_override(doc: dict[str, Any], parts: list[str], value: Any) -> None:
    """Set ``doc[parts[0]][parts[1]]... = value`` in place; list entries by index.

    Raises:
        SpaceError: an index out of range, or a path through a plain value.
    """
    node: Any = doc
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpaceError(where, f"index out of range: the list has {len(node)} entries (0..{len(node) - 1})")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise SpaceError(".".join(parts[:i]), f"is a value ({node!r}), it has no key {part!r}")


_UNION_TAGS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false", "none": "null"}


def _union_member(part: Any) -> str | None:
    """What pydantic's location tag of a union member (``literal['paper']``, ``list[str]``) stands for, else None."""
    text = str(part)
    if text in _UNION_TAGS:
        return _UNION_TAGS[text]
    if text.startswith("literal[") and text.endswith("]"):
        return text.removeprefix("literal[").removesuffix("]").replace("|", " or ")
    if text.startswith(("list[", "tuple[")):
        return f"a list of {_UNION_TAGS.get(text[text.index('[') + 1 : -1].split(',')[0].strip(), 'values')}s".replace(
            "a strings", "strings").replace("an integers", "integers").replace("a numbers", "numbers")  # fmt: skip
    return None


def _format_validation_error(err: ValidationError) -> SpaceError:
    errors = err.errors(include_url=False)
    first = errors[0]
    tags = [_union_member(p) for p in first["loc"]]
    if any(tags):
        # a value that fits no member of a union (seeds: 'paper' | list[str]): one line with every member
        where = tuple(p for p, t in zip(first["loc"], tags) if t is None)
        members = [m for e in errors for p in e["loc"] if (m := _union_member(p))
                   and tuple(q for q in e["loc"] if _union_member(q) is None) == where]  # fmt: skip
        loc = ".".join(str(p) for p in where if not str(p).startswith("function-"))
        return SpaceError(loc, f"expected {' or '.join(dict.fromkeys(members))} (got {first.get('input')!r:.60})")
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    kind = first["type"]
    msg = first["msg"].removeprefix("Value error, ")
    given = first.get("input")
    if kind == "string_pattern_mismatch" and loc == "name":
        return SpaceError(loc, f"a run name holds letters, digits, _ . - and starts with a letter or digit (got {given!r:.60})")
    if kind == "extra_forbidden":
        msg = "unknown key"
        parent_loc = first["loc"][:-1]
        model: Any = SearchSpace
        for part in parent_loc:
            if isinstance(part, int):
                continue
            field = model.model_fields.get(str(part))
            ann = getattr(field, "annotation", None) if field else None
            ann = _model_in(ann)
            if ann is None:
                model = None
                break
            model = ann
        if model is not None:
            msg += f"; allowed: {', '.join(model.model_fields)}"
    elif kind == "missing":
        msg = "required key is missing"
    elif given is not None and kind not in ("model_type", "dict_type") and not isinstance(given, dict):
        shown = repr(given)
        msg += f" (got {shown[:60]})"
    return SpaceError(loc, msg)


def _model_in(ann: Any) -> Any:
    """The BaseModel subclass inside an annotation like ``GroupRule``, ``list[GroupRule]``."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _shown(p: Path, limit: int = 120) -> str:
    """``p`` for an error line: a path longer than ``limit`` characters is cut in the middle."""
    text = str(p)
    return text if len(text) <= limit else f"{text[: limit // 2]}...{text[-limit // 2 :]} ({len(text)} characters)"


def _read_yaml(p: Path) -> Any:
    """The parsed YAML of a space file; one-line SpaceError for anything that is not readable YAML text."""
    try:
        mode = p.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise SpaceError("", f"space file not found: {_shown(p)}") from None
    except OSError as e:  # a name too long, a loop of links, no permission on a folder
        raise SpaceError("", f"{_shown(p)}: cannot be read ({e.strerror or type(e).__name__})") from None
    if stat.S_ISDIR(mode):
        raise SpaceError("", f"{_shown(p)} is a folder, not a space file (e.g. spaces/nin.yaml)")
    if not stat.S_ISREG(mode):
        raise SpaceError("", f"{_shown(p)} is not a regular file (a device, pipe or socket); give a space file (e.g. spaces/nin.yaml)")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise SpaceError("", f"{p}: cannot be read ({e.strerror or type(e).__name__})") from None
    try:
        text = raw.decode("utf-8-sig")  # a leading byte-order mark is fine
    except UnicodeDecodeError as e:
        raise SpaceError(
            "", f"{p}: not a UTF-8 text file (byte 0x{raw[e.start]:02x} at offset {e.start}); a space file is YAML text"
        ) from None
    try:
        return _yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        position = getattr(e, "position", None)  # a ReaderError: a character YAML does not allow
        if mark is not None:
            where = f" (line {mark.line + 1})"
        elif isinstance(position, int):
            where = f" (line {text.count(chr(10), 0, position) + 1})"
        else:
            where = ""
        reason = str(getattr(e, "problem", None) or e).splitlines()[0]
        raise SpaceError("", f"{p}: not valid YAML{where}: {reason}") from None


def _read_document(path: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(the parsed mapping, the default run name)."""
    if isinstance(path, dict):
        return json.loads(json.dumps(path)), "space"  # a deep copy that is plain data
    p = Path(path)
    doc = _read_yaml(p)
    if not isinstance(doc, dict):
        raise SpaceError("", "a space file must be a mapping of keys (name, model, groups, ...)")
    return doc, p.name.removesuffix(".yaml").removesuffix(".yml")


def _validate(doc: dict[str, Any]) -> SearchSpace:
    try:
        return SearchSpace.model_validate(doc)
    except ValidationError as e:
        raise _format_validation_error(e) from None


def _apply_profile(doc: dict[str, Any], profiles: Any, profile: str) -> None:
    """Apply profile ``profile`` (``{"key.path": value}``) to ``doc`` in place."""
    if not isinstance(profiles, dict) or profile not in profiles:
        names = ", ".join(profiles) if isinstance(profiles, dict) and profiles else "none"
        raise SpaceError("--profile", f"the space has no profile {profile!r}; its profiles: {names}")
    items = profiles[profile]
    if not isinstance(items, dict):
        raise SpaceError(f"profiles.{profile}", "must be a mapping of key.path: value (as --set takes them)")
    for key, value in items.items():
        parts = str(key).split(".")
        if any(not p for p in parts) or parts[0] == "profiles":
            raise SpaceError(f"profiles.{profile}", f"malformed key {key!r}")
        try:
            _merge(doc, parts, value)
        except SpaceError as e:
            raise SpaceError(f"profiles.{profile}.{key}", str(e)) from None


def _merge(doc: dict[str, Any], parts: list[str], value: Any) -> None:
    """:func:`apply_override`, but a mapping given where the document holds a mapping is merged key by
    key (a profile's ``trainer: {epochs: 2}`` sets ``trainer.epochs`` and keeps the other trainer keys,
    as ``trainer.epochs: 2`` does) rather than replacing the whole block."""
    node: Any = doc
    for part in parts:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(value, dict) and isinstance(node, dict) and value:
        for sub, sub_value in value.items():
            _merge(doc, [*parts, str(sub)], sub_value)
    else:
        apply_override(doc, parts, value)


def profile_names(path: str | Path | dict[str, Any]) -> list[str]:
    """The hardware profiles a space file defines (``profiles:`` keys), without validating it.

    Raises:
        SpaceError: the file cannot be read.
    """
    doc, _ = _read_document(path)
    profiles = doc.get("profiles")
    return list(profiles) if isinstance(profiles, dict) else []


def read_space(
    path: str | Path | dict[str, Any],
    overrides: list[str] | tuple[str, ...] = (),
    *,
    name: str | None = None,
    profile: str | None = None,
) -> SearchSpace:
    """The file with a hardware profile and ``--set`` overrides applied, validated against the schema only.

    Precedence: the file < the profile < ``--set``. Every profile of the file is validated (applied
    to the file and checked like ``--set``), so a typo in the profile not chosen today is found too.
    No torch is imported.

    Raises:
        SpaceError: one line naming the key and what is allowed.
    """
    doc, default_name = _read_document(path)
    if name is None and "name" not in doc and not re.match(RUN_NAME_PATTERN, default_name):
        raise SpaceError("name", f"the run name defaults to the file's name {default_name!r}, which is not one (letters, "
                                 "digits, _ . -, a letter or digit first): add a name: key to the space or pass --name")  # fmt: skip
    profiles = doc.get("profiles") or {}
    if isinstance(profiles, dict):
        for other in profiles:
            trial_doc = json.loads(json.dumps(doc))
            _apply_profile(trial_doc, profiles, other)
            trial_doc.setdefault("name", default_name)
            try:
                _validate(trial_doc)
            except SpaceError as e:
                raise SpaceError(f"profiles.{other}", str(e)) from None
    if profile is not None:
        _apply_profile(doc, profiles, profile)
    for item in overrides:
        parts, value = parse_override(item)
        apply_override(doc, parts, value)
    if name is not None:
        doc["name"] = name
    doc.setdefault("name", default_name)
    return _validate(doc)


def load_space(
    path: str | Path | dict[str, Any],
    overrides: list[str] | tuple[str, ...] = (),
    *,
    name: str | None = None,
    check_data: bool = True,
    profile: str | None = None,
) -> ResolvedSpace:
    """Read a space file (or a dict), apply a profile and ``--set`` overrides, validate it and resolve it once.

    Validation covers the file's types and values, and everything the model registry, the data
    description and the trainer config can check without training: layer names and group counts,
    seeds, trainer keys, the data folder. Nothing is written. The result is the frozen bundle the
    whole search runs on (trials get it as it is; nothing downstream re-validates or re-resolves).

    Args:
        path: a YAML file, or an already parsed mapping.
        overrides: ``"key.path=value"`` items (values parsed as YAML: ``3``, ``[1, 2]``, ``null``);
            list entries by index (``groups.0.choices=[1,2]``).
        name: the run name; default: the file's ``name`` key, else the file name without ``.yaml``.
        check_data: the data must be at hand (CIFAR-10 is downloaded if need be); False describes
            a space without its data (a dry run).
        profile: a hardware profile of the file (``profiles:``) to apply before the overrides.

    Returns:
        The :class:`search.space.ResolvedSpace`.

    Raises:
        SpaceError: one line naming the key and what is allowed.

    Example:
        >>> from search import load_space
        >>> load_space("spaces/nin.yaml", ["search.sampler=tpe"], check_data=False).spec.search.sampler
        'tpe'
    """
    spec = read_space(path, overrides, name=name, profile=profile)
    from ._resolve import resolve  # noqa: PLC0415 (imports torch and deeproots: after the schema)

    return resolve(spec, check_data=check_data, profile=profile)
