"""YAML in and out, the way SOPS and kustomize read it.

- Scalars resolve by the YAML 1.2 core schema (as Go's yaml.v3 in SOPS and kustomize does):
  `no`, `on`, `yes`, `off` stay strings, so a MAC computed here matches the one SOPS computes.
- Duplicate mapping keys are an error (PyYAML would silently keep the last one).
- Output is deterministic: insertion order, two-space indent, no line folding, multi-line
  strings as literal blocks, and any string that a YAML 1.1 *or* 1.2 reader would retype
  (`no`, `0o17`, `1e3`, `~`) is quoted.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class YamlError(Exception):
    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


# libyaml's parser when PyYAML has it (the scanner dominates a kustomize build's plugin time);
# resolution and construction stay in Python, so both give the same objects.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    pass


# Replace YAML 1.1 implicit resolvers with the YAML 1.2 core schema.
_Loader.yaml_implicit_resolvers = {}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)


def _bool(loader: _Loader, node: yaml.Node) -> bool:
    return loader.construct_scalar(node).lower() == "true"


def _int(loader: _Loader, node: yaml.Node) -> int:
    v = loader.construct_scalar(node)
    if v.startswith(("0o", "0x")):
        return int(v, 0)
    return int(v, 10)


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    out: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise YamlError("unhashable mapping key", key_node.start_mark.line + 1) from None
        if key in out:
            raise YamlError(f"duplicate key {key!r}", key_node.start_mark.line + 1)
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_Loader.add_constructor("tag:yaml.org,2002:bool", _bool)
_Loader.add_constructor("tag:yaml.org,2002:int", _int)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
# Timestamps stay strings: Kubernetes objects carry them as strings.
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_str)


def load_all(text: str | bytes) -> list[Any]:
    """Parse every document; raise YamlError with a line number."""
    try:
        return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except YamlError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise YamlError(f"malformed YAML: {exc.problem or exc}", line) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"malformed YAML: {exc}") from None


def load(text: str | bytes) -> Any:
    docs = load_all(text)
    if len(docs) != 1:
        raise YamlError(f"expected exactly one YAML document, found {len(docs)}")
    return docs[0]


_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[misc, valid-type]
    def ignore_aliases(self, data: Any) -> bool:
        return True


# Quote what a YAML 1.2 reader would retype, on top of the YAML 1.1 rules SafeDumper knows.
_Dumper.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^(?:0o[0-7]+)$"), ["0"])


def _str(dumper: _Dumper, data: str) -> yaml.ScalarNode:
    if "\n" in data and not any(c in data for c in "\r\t\x00") and data.strip(" ") == data:
        if not any(line != line.rstrip() for line in data.split("\n")):
            return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str)


def dump(doc: Any) -> str:
    return yaml.dump(
        doc,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 30,
        indent=2,
    )


def dump_all(docs: list[Any]) -> str:
    return "---\n".join(dump(d) for d in docs)
