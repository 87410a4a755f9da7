"""One error type that becomes a KRM `results` entry and a line on stderr."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ResourceRef:
    api_version: str = ""
    kind: str = ""
    name: str = ""
    namespace: str = ""

    @classmethod
    def of(cls, obj: Any) -> ResourceRef | None:
        if not isinstance(obj, dict):
            return None
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        return cls(
            str(obj.get("apiVersion", "") or ""),
            str(obj.get("kind", "") or ""),
            str(meta.get("name", "") or ""),
            str(meta.get("namespace", "") or ""),
        )

    def as_dict(self) -> dict:
        out = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        return out

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {ns}{self.name}"


@dataclass
class KrmError(Exception):
    """An error that names the file, the resource and the field, and says what was expected."""

    message: str
    file: str | None = None
    resource: ResourceRef | None = None
    field_path: str | None = None
    severity: str = "error"
    tried: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def full_message(self) -> str:
        msg = self.message
        if self.tried:
            msg += " (tried: " + "; ".join(self.tried) + ")"
        return msg

    def result(self) -> dict:
        out: dict[str, Any] = {"message": self.full_message(), "severity": self.severity}
        if self.resource is not None:
            out["resourceRef"] = self.resource.as_dict()
        if self.field_path:
            out["field"] = {"path": self.field_path}
        if self.file:
            out["file"] = {"path": self.file}
        return out

    def line(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file)
        if self.resource is not None and (self.resource.kind or self.resource.name):
            parts.append(str(self.resource))
        if self.field_path:
            parts.append(self.field_path)
        where = ": ".join(parts)
        return f"krm-secrets: {self.severity}: {where + ': ' if where else ''}{self.full_message()}"
