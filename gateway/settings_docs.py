"""Writes docs/configuration.md from the settings' own field descriptions.

    python -m gateway.settings_docs docs/configuration.md   # `make docs-config`
    python -m gateway.settings_docs --check docs/configuration.md

Every field of `gateway.settings.Settings` becomes a row (name, environment variable, type,
default, description), nested models get a section of their own, and the page ends with a YAML
file holding every default. tests/gateway/test_settings_docs.py fails while the page is stale.
Imports nothing but the standard library and gateway.settings.
"""

from __future__ import annotations

import enum
import json
import sys
import textwrap
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from gateway.settings import CONFIG_ENV_VAR, Settings

if TYPE_CHECKING:
    from pydantic import BaseModel

# The page of the docs that explains each section, linked from its heading.
SECTION_PAGES = {
    "server": "clients.md",
    "upstream": "clients.md",
    "store": "tenants.md",
    "auth": "tenants.md",
    "admin": "tenants.md",
    "routing": "routing.md",
    "observability": "operations/metrics.md",
    "tracing": "operations/tracing.md",
    "limits": "limits.md",
    "usage": "usage.md",
    "safety": "safety.md",
    "isolation": "isolation.md",
}

_CONSTRAINTS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


def _is_model(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and hasattr(annotation, "model_fields")


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(json.dumps(arg) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("None" if arg is type(None) else _type_name(arg) for arg in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(map(_type_name, args))}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _constraints(field: Any) -> str:
    parts = []
    for item in field.metadata:
        for attr, sign in _CONSTRAINTS.items():
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{sign} {value}")
    return ", ".join(parts)


def _plain(value: Any) -> Any:
    """The default as the YAML or JSON a user would write."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if hasattr(value, "get_secret_value"):
        return "<secret>"
    if hasattr(value, "model_dump"):
        return _plain(value.model_dump(mode="json"))
    return str(value)


def _default(field: Any) -> Any:
    if field.default_factory is not None:
        return _plain(field.default_factory())
    return _plain(field.default)


def _scalar(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _env_name(path: tuple[str, ...]) -> str:
    config = Settings.model_config
    delimiter = config.get("env_nested_delimiter") or "__"
    return config.get("env_prefix", "") + delimiter.join(part.upper() for part in path)


def _anchor(path: tuple[str, ...]) -> str:
    return "-".join(path).replace("_", "-")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _models(
    model: type[BaseModel], path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], type[BaseModel]]]:
    """`model` at `path`, then every nested model below it, depth first."""
    yield path, model
    for name, field in model.model_fields.items():
        if _is_model(field.annotation):
            yield from _models(field.annotation, (*path, name))


def _table(model: type[BaseModel], path: tuple[str, ...]) -> list[str]:
    rows = [
        "| setting | environment variable | type | default | description |",
        "|---|---|---|---|---|",
    ]
    for name, field in model.model_fields.items():
        dotted = ".".join((*path, name))
        if _is_model(field.annotation):
            anchor = _anchor((*path, name))
            description = field.description or (field.annotation.__doc__ or "").strip()
            rows.append(
                f"| `{dotted}` | `{_env_name((*path, name))}__*` | section | "
                f"[below](#{anchor}) | {_cell(description)} |"
            )
            continue
        type_name = _type_name(field.annotation)
        constraints = _constraints(field)
        if constraints:
            type_name = f"{type_name} ({constraints})"
        default = "required" if field.is_required() else f"`{_scalar(_default(field))}`"
        rows.append(
            f"| `{dotted}` | `{_env_name((*path, name))}` | `{_cell(type_name)}` | "
            f"{_cell(default)} | {_cell(field.description or '')} |"
        )
    return rows


def _yaml(model: type[BaseModel], indent: int) -> list[str]:
    lines = []
    pad = "  " * indent
    for name, field in model.model_fields.items():
        comment = field.description or ""
        if _is_model(field.annotation):
            lines.append(f"{pad}{name}:")
            lines.extend(_yaml(field.annotation, indent + 1))
            continue
        line = f"{pad}{name}: {_scalar(_default(field))}"
        if comment and len(line) + len(comment) + 3 <= 100:
            lines.append(f"{line}  # {comment}")
        else:
            if comment:
                width = max(40, 100 - len(pad) - 2)
                lines.extend(f"{pad}# {part}" for part in textwrap.wrap(comment, width))
            lines.append(line)
    return lines


def _sections() -> Iterator[tuple[str, type[BaseModel]]]:
    """Each section of the settings: every field of `Settings` is a model."""
    for section, field in Settings.model_fields.items():
        model = field.annotation
        if not _is_model(model):
            raise TypeError(f"settings section {section!r} is not a model")
        yield section, model


def render() -> str:
    """The whole of docs/configuration.md."""
    prefix = Settings.model_config.get("env_prefix", "")
    delimiter = Settings.model_config.get("env_nested_delimiter", "__")
    out = [
        "<!-- Generated by `make docs-config` (python -m gateway.settings_docs) from the field",
        "     descriptions in gateway/settings.py. Do not edit: change a description there. -->",
        "",
        "# Configuration",
        "",
        "One typed settings object (`gateway/settings.py`), read from a YAML file (`--config FILE`",
        f"or `{CONFIG_ENV_VAR}`) and overridden by environment variables",
        f"`{prefix}<SECTION>{delimiter}<NAME>` (nested sections add another `{delimiter}`, e.g.",
        f"`{_env_name(('limits', 'defaults', 'requests_per_minute'))}`). Unknown keys are",
        "refused. Precedence: arguments given in code > environment > YAML file > defaults.",
        "Lists and mappings are given in the environment as JSON",
        f"(`{_env_name(('admin', 'keys'))}='[\"...\"]'`).",
        "",
        "Regenerate this page with `make docs-config` after changing a setting;",
        "`make test` fails while it is stale.",
        "",
    ]
    for section, section_model in _sections():
        for path, model in _models(section_model, (section,)):
            depth = "#" * (len(path) + 1)
            out.append(f"{depth} {'.'.join(path)} {{ #{_anchor(path)} }}")
            out.append("")
            doc = " ".join((model.__doc__ or "").split())
            if doc:
                out.extend([doc, ""])
            if len(path) == 1 and section in SECTION_PAGES:
                page = SECTION_PAGES[section]
                out.extend([f"How these settings are used: [{page}]({page}).", ""])
            out.extend(_table(model, path))
            out.append("")
    out.extend(["## Every default, as a YAML file", "", "```yaml"])
    for section, model in _sections():
        out.append(f"{section}:")
        out.extend(_yaml(model, 1))
    out.extend(["```", ""])
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    paths = [arg for arg in args if arg != "--check"]
    if len(paths) != 1:
        print("usage: python -m gateway.settings_docs [--check] docs/configuration.md")
        return 2
    path = Path(paths[0])
    text = render()
    if check:
        if not path.exists() or path.read_text() != text:
            print(f"{path} is stale: run `make docs-config`")
            return 1
        return 0
    path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
