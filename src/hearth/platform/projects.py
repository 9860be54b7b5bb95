"""Projects and service accounts, as functions over an open session (the store owns transactions)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hearth.platform.db.models import Project, ServiceAccount
from hearth.platform.db.paging import paginate
from hearth.platform.errors import InvalidArgument, NotFound, ProjectArchived
from hearth.platform.ids import PROJECT_PREFIX, SERVICE_ACCOUNT_PREFIX, new_id

MAX_NAME = 256


def valid_name(name: str, param: str = "name") -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidArgument(f"'{param}' must be 1 to {MAX_NAME} characters.", param)
    return name


def require_project(session: Session, project_id: str, *, active: bool = False, lock: bool = False) -> Project:
    """The project row; ``NotFound`` if missing, ``ProjectArchived`` if ``active`` and archived."""
    stmt = select(Project).where(Project.id == project_id)
    if lock:
        stmt = stmt.with_for_update()
    project = session.scalars(stmt).first()
    if project is None:
        raise NotFound("project", project_id)
    if active and project.status != "active":
        raise ProjectArchived(project_id)
    return project


def create_project(session: Session, org_id: str, name: str, now: int) -> Project:
    project = Project(
        id=new_id(PROJECT_PREFIX), org_id=org_id, name=valid_name(name), status="active", created_at=now
    )
    session.add(project)
    session.flush()
    return project


def list_projects(
    session: Session, *, after: str | None, limit: int, include_archived: bool
) -> tuple[list[Project], bool]:
    where = [] if include_archived else [Project.status == "active"]
    return paginate(session, Project, *where, after=after, limit=limit)


def rename_project(session: Session, project_id: str, name: str) -> Project:
    project = require_project(session, project_id, active=True, lock=True)
    project.name = valid_name(name)
    session.flush()
    return project


def archive_project(session: Session, project_id: str, now: int, *, default_project_id: str | None) -> Project:
    """Archive a project (idempotent). Its keys stop authenticating at once; the default project
    cannot be archived."""
    project = require_project(session, project_id, lock=True)
    if project.id == default_project_id:
        raise InvalidArgument("The default project cannot be archived.", "project_id")
    if project.status != "archived":
        project.status = "archived"
        project.archived_at = now
        session.flush()
    return project


def create_service_account(session: Session, project_id: str, name: str, role: str, now: int) -> ServiceAccount:
    require_project(session, project_id, active=True)
    if role not in ("member", "owner"):
        raise InvalidArgument("role must be 'member' or 'owner'.", "role")
    account = ServiceAccount(
        id=new_id(SERVICE_ACCOUNT_PREFIX), project_id=project_id, name=valid_name(name), role=role, created_at=now
    )
    session.add(account)
    session.flush()
    return account


def list_service_accounts(
    session: Session, project_id: str, *, after: str | None, limit: int
) -> tuple[list[ServiceAccount], bool]:
    require_project(session, project_id)
    return paginate(session, ServiceAccount, ServiceAccount.project_id == project_id, after=after, limit=limit)


def get_service_account(session: Session, project_id: str, account_id: str) -> ServiceAccount | None:
    stmt = select(ServiceAccount).where(ServiceAccount.id == account_id, ServiceAccount.project_id == project_id)
    return session.scalars(stmt).first()
