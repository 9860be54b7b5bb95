"""Typed platform failures. They carry no HTTP knowledge; api/errors.py maps each class once."""

from __future__ import annotations


class PlatformError(Exception):
    """Base class of every platform failure."""


class NotFound(PlatformError):
    """The object does not exist, was deleted, or belongs to another project."""

    def __init__(self, kind: str, object_id: str) -> None:
        super().__init__(f"No {kind} found with id '{object_id}'.")
        self.kind = kind
        self.object_id = object_id


class InvalidArgument(PlatformError, ValueError):
    """A caller-supplied value is malformed or out of range; ``param`` names it."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ProjectArchived(PlatformError):
    """The project is archived: it can no longer be changed or given new keys or accounts."""

    def __init__(self, project_id: str) -> None:
        super().__init__(f"Project '{project_id}' is archived.")
        self.project_id = project_id
