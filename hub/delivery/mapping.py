"""Declarative mappings (`mappings/<form>.<connector>.yaml`) that turn a form payload into a record.

Each file is compiled once at load, so a bad key or JMESPath is a ConfigError before deploy.
"""

from __future__ import annotations

import collections.abc as cabc
import copy
from collections.abc import Callable, Hashable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jmespath
import jmespath.exceptions
import yaml
from jmespath.visitor import TreeInterpreter

from hub.attachments.delivery import MODES, AttachmentRef
from hub.errors import ConfigError, MappingError

_SOURCES = ("path", "const", "join")
_TRANSFORMS = ("default", "lookup", "format_date", "timezone", "upper", "lower", "sep", "skip_empty", "template", "omit_if_null", "attach")
_TOP_KEYS = ("form", "connector", "tables", "record")
_OMIT: Any = object()  # an `omit_if_null` value: its key (or list item) is left out of the record
Evaluator = Callable[[dict[str, Any]], Any]
Step = Callable[[Any], Any]

# one interpreter for every search: `ParsedResult.search` builds a new one per call, which was
# 60 % of a search's cost (2.3 of 3.9 µs) and about 5 % of a worker's CPU in the benchmark
_INTERPRETER = TreeInterpreter()


class _Lined(dict[Any, Any]):
    """A YAML mapping that remembers where it and each of its keys start, for error messages."""

    line: int = 0
    key_lines: dict[Any, int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Lined:
    seen: dict[Hashable, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:  # PyYAML silently keeps the last one, which hides typos
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    result = _Lined(loader.construct_mapping(node, deep=True))
    result.line, result.key_lines = node.start_mark.line + 1, seen
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _plain(value: Any) -> Any:
    """Drop the line bookkeeping so constants reach records as ordinary dicts."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, list) else value


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _each(step: Step) -> Step:
    """Scalar transforms apply item by item to a list and leave null alone."""
    return lambda v: None if v is None else [step(i) for i in v] if isinstance(v, list) else step(v)


class _Compiler:
    def __init__(self, path: Path, tables: dict[str, dict[str, Any]]) -> None:
        self.path, self.tables = path, tables
        # the output fields that hold `attach: file` files (only e-mail and REST connectors send them)
        self.file_fields: list[str] = []

    def error(self, line: int, message: str) -> ConfigError:
        return ConfigError(f"{self.path}:{line}: {message}" if line else f"{self.path}: {message}")

    def node(self, raw: Any, where: str, line: int) -> Evaluator:
        if isinstance(raw, _Lined):
            return self.expression(raw, where) if raw.keys() & set(_SOURCES) else self.obj(raw, where)
        if isinstance(raw, list):
            items = [self.node(item, f"{where}[{i}]", line) for i, item in enumerate(raw)]
            return lambda scope: [v for v in (f(scope) for f in items) if v is not _OMIT]
        raise self.error(line, f"{where}: bare value {raw!r}; write {{const: {raw!r}}} or {{path: ...}}")

    def obj(self, raw: _Lined, where: str) -> Evaluator:
        fields: list[tuple[str, Evaluator]] = []
        for key, value in raw.items():
            if not isinstance(key, str):
                raise self.error(raw.key_lines[key], f"{where}: output keys must be strings, not {key!r}")
            fields.append((key, self.node(value, f"{where}.{key}", raw.key_lines[key])))

        def run(scope: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in ((k, f(scope)) for k, f in fields) if v is not _OMIT}

        return run

    def expression(self, raw: _Lined, where: str) -> Evaluator:
        for key in raw:
            if key not in _SOURCES and key not in _TRANSFORMS:
                known = ", ".join(_SOURCES + _TRANSFORMS)
                raise self.error(raw.key_lines[key], f"{where}: unknown key {key!r} (known: {known})")
        joins_list = isinstance(raw.get("join"), list)
        sources = [k for k in ("path", "const") if k in raw] + (["join"] if joins_list else [])
        if len(sources) != 1:
            raise self.error(raw.line, f"{where}: needs exactly one of path, const or a join list, got {sources}")
        if "join" in raw and not joins_list and raw["join"] is not True:
            raise self.error(raw.line, f"{where}: join must be a list of expressions or true")
        if ("sep" in raw or "skip_empty" in raw) and "join" not in raw:
            raise self.error(raw.line, f"{where}: sep and skip_empty only go with join")
        for flag in ("upper", "lower", "skip_empty", "omit_if_null"):
            if not isinstance(raw.get(flag, False), bool):
                raise self.error(raw.key_lines[flag], f"{where}: {flag} must be true or false")
        source, steps = self.source(raw, sources[0], where), self.steps(raw, where)

        def run(scope: dict[str, Any]) -> Any:
            value = source(scope)
            for step in steps:
                value = step(value)
            return value

        return run

    def source(self, raw: _Lined, kind: str, where: str) -> Evaluator:
        if kind == "const":
            value = _plain(raw["const"])
            return lambda scope: copy.deepcopy(value)
        if kind == "join":
            parts = []
            for i, item in enumerate(raw["join"]):
                if not (isinstance(item, _Lined) and item.keys() & set(_SOURCES)):
                    raise self.error(raw.line, f"{where}.join[{i}]: each item must be an expression")
                parts.append(self.expression(item, f"{where}.join[{i}]"))
            join = self.joiner(raw, where)
            return lambda scope: join([p(scope) for p in parts])
        if not isinstance(raw["path"], str):
            raise self.error(raw.line, f"{where}: path must be a JMESPath string")
        try:
            compiled = jmespath.compile(raw["path"])
        except jmespath.exceptions.JMESPathError as exc:
            raise self.error(raw.line, f"{where}: bad JMESPath {raw['path']!r}: {exc}") from None

        def search(scope: dict[str, Any]) -> Any:
            try:  # payloads are shared with other deliveries; never hand out a live part of one
                return copy.deepcopy(_INTERPRETER.visit(compiled.parsed, scope))
            except jmespath.exceptions.JMESPathError as exc:
                raise MappingError(f"{self.path.name}: {where}: {exc}") from None

        return search

    def joiner(self, raw: _Lined, where: str) -> Step:
        sep, skip = raw.get("sep", ""), raw.get("skip_empty", False)
        if not isinstance(sep, str):
            raise self.error(raw.line, f"{where}: sep must be a string")

        def join(items: list[Any]) -> str:
            texts = []
            for item in items:
                if item is None or item is _OMIT or item == "":
                    if skip:
                        continue
                    item = ""
                if isinstance(item, (dict, list)):
                    raise MappingError(f"{self.path.name}: {where}: cannot join a nested {type(item).__name__}")
                texts.append(_text(item))
            return sep.join(texts)

        return join

    def steps(self, raw: _Lined, where: str) -> list[Step]:
        """The transforms in their fixed order: default, lookup, format_date, case, join, template, omit."""
        steps: list[Step] = []
        has_default, default = "default" in raw, _plain(raw.get("default"))
        if has_default:
            steps.append(lambda v: copy.deepcopy(default) if v is None else v)
        if "lookup" in raw:
            steps.append(_each(self.lookup(raw, where, has_default, default)))
        if "format_date" in raw:
            steps.append(_each(self.date_format(raw, where)))
        elif "timezone" in raw:
            raise self.error(raw.line, f"{where}: timezone only goes with format_date")
        if raw.get("upper") and raw.get("lower"):
            raise self.error(raw.line, f"{where}: upper and lower cannot both be true")
        if raw.get("upper") or raw.get("lower"):
            method = str.upper if raw.get("upper") else str.lower
            steps.append(_each(lambda v: method(v) if isinstance(v, str) else v))
        if raw.get("join") is True:  # a join list was already joined as the source
            join = self.joiner(raw, where)
            steps.append(lambda v: join(v) if isinstance(v, list) else v)
        if "template" in raw:
            template = raw["template"]
            if not isinstance(template, str) or "{}" not in template:
                raise self.error(raw.line, f"{where}: template must be a string containing {{}}")
            steps.append(lambda v: self.fill(template, v, where))
        if "attach" in raw:
            # attachments.<field> items as files (e-mail, REST multipart) or base64 in a JSON body
            mode = raw["attach"]
            if mode not in MODES:
                raise self.error(raw.key_lines["attach"], f"{where}: attach must be one of {', '.join(MODES)}")
            label = f"{self.path.name}: {where}"
            if mode == "file":
                self.file_fields.append(where)
            steps.append(_each(lambda v: AttachmentRef.of(v, mode, label)))
        if raw.get("omit_if_null"):
            steps.append(lambda v: _OMIT if v is None else v)
        return steps

    def lookup(self, raw: _Lined, where: str, has_default: bool, default: Any) -> Step:
        name = raw["lookup"]
        if not isinstance(name, str) or name not in self.tables:
            raise self.error(raw.line, f"{where}: lookup table {name!r} is not defined under tables")
        table = self.tables[name]

        def look(code: Any) -> Any:
            if _text(code) in table:
                return copy.deepcopy(table[_text(code)])
            if has_default:
                return copy.deepcopy(default)
            raise MappingError(f"{self.path.name}: {where}: code {code!r} is not in lookup table {name!r}")

        return look

    def date_format(self, raw: _Lined, where: str) -> Step:
        pattern, zone_name = raw["format_date"], raw.get("timezone")
        if not isinstance(pattern, str):
            raise self.error(raw.line, f"{where}: format_date must be a strftime pattern")
        try:  # timezone: an aware value is shown in the council's local time (GMT or BST)
            zone = ZoneInfo(zone_name) if isinstance(zone_name, str) else None
        except (ZoneInfoNotFoundError, ValueError):
            zone = None
        if zone_name is not None and zone is None:
            raise self.error(raw.line, f"{where}: unknown timezone {zone_name!r}")

        def format_date(value: Any) -> str:
            try:
                moment = datetime.fromisoformat(value)
            except (TypeError, ValueError):
                raise MappingError(f"{self.path.name}: {where}: {value!r} is not an ISO 8601 date") from None
            if zone is not None and moment.tzinfo is not None:
                moment = moment.astimezone(zone)
            return moment.strftime(pattern)

        return format_date

    def fill(self, template: str, value: Any, where: str) -> Any:
        if value is None or value == "":  # nothing to label: stays empty so a join can skip it
            return value
        if isinstance(value, (dict, list)):
            raise MappingError(f"{self.path.name}: {where}: template needs a single value; join lists first")
        return template.replace("{}", _text(value))  # not str.format: values must not act as format fields


class RecordMapping:
    """One compiled mapping file; `apply` is pure and safe to share across worker threads."""

    def __init__(self, form_id: str, connector: str, path: Path, root: Evaluator, file_fields: tuple[str, ...] = ()) -> None:
        self.form_id, self.connector, self.path, self._root = form_id, connector, path, root
        # where the record holds `attach: file` files ("record.photos")
        self.file_fields = file_fields

    @classmethod
    def load(cls, path: Path) -> RecordMapping:
        try:
            doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # _Loader is a SafeLoader
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read mapping: {exc}") from None
        except yaml.MarkedYAMLError as exc:
            line = exc.problem_mark.line + 1 if exc.problem_mark else 0
            raise ConfigError(f"{path}:{line}: {exc.problem}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        compiler = _Compiler(path, {})
        if not isinstance(doc, _Lined):
            raise compiler.error(0, "a mapping file is a YAML mapping with form, connector and record")
        for key in doc:
            if key not in _TOP_KEYS:
                raise compiler.error(doc.key_lines[key], f"unknown key {key!r} (known: {', '.join(_TOP_KEYS)})")
        form_id, connector = doc.get("form"), doc.get("connector")
        if not isinstance(form_id, str) or not isinstance(connector, str):
            raise compiler.error(doc.line, "form and connector must both be given as strings")
        if path.stem != f"{form_id}.{connector}":  # the file name is how people find a mapping
            raise compiler.error(doc.line, f"file should be named {form_id}.{connector}{path.suffix}")
        tables = doc.get("tables", {})
        if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
            raise compiler.error(doc.line, "tables must map each table name to {code: value}")
        compiler.tables = {str(n): {_text(k): _plain(v) for k, v in t.items()} for n, t in tables.items()}
        record = doc.get("record")
        if not isinstance(record, _Lined) or record.keys() & set(_SOURCES):
            raise compiler.error(doc.key_lines.get("record", doc.line), "record must be an object of fields")
        root = compiler.obj(record, "record")
        return cls(form_id, connector, path, root, tuple(compiler.file_fields))

    def apply(self, payload: cabc.Mapping[str, Any], meta: cabc.Mapping[str, Any],
              attachments: cabc.Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Build the record; MappingError names this file, the output field and the cause.
        `attachments`: the submission's files by field (hub.attachments.delivery `scope`)."""
        result: dict[str, Any] = self._root({"payload": payload, "meta": meta, "attachments": attachments or {}})
        return result


def load_mappings(directory: Path) -> dict[tuple[str, str], RecordMapping]:
    found: dict[tuple[str, str], RecordMapping] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        mapping = RecordMapping.load(path)
        key = (mapping.form_id, mapping.connector)
        if key in found:
            raise ConfigError(f"{path}: {key} is already mapped by {found[key].path}")
        found[key] = mapping
    return found
