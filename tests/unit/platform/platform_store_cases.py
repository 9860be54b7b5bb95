"""Store behaviour shared by the SQLite unit tests and the PostgreSQL integration tests.

A subclass provides a ``db_url`` fixture for an empty database; everything else is here.
"""

from __future__ import annotations

import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from hearth.platform.db import ApiKey, Organization, Project, make_engine, make_sessionmaker, upgrade
from hearth.platform.errors import InvalidArgument, NotFound, ProjectArchived
from hearth.platform.keys import KeyOwner, Principal
from hearth.platform.store import PlatformStore

SERVER_SECRET = b"k" * 32
T0 = 1_700_000_000


class Clock:
    def __init__(self, t: int = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


StoreFactory = Callable[..., PlatformStore]


class StoreCases:
    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    def make_store(self, db_url: str, clock: Clock) -> Iterator[StoreFactory]:
        """Stores over one migrated (not bootstrapped) database, each with its own engine."""
        upgrade(db_url)
        engines = []

        def make(server_secret: bytes = SERVER_SECRET) -> PlatformStore:
            engine = make_engine(db_url)
            engines.append(engine)
            return PlatformStore(make_sessionmaker(engine), server_secret, clock=clock)

        yield make
        for engine in engines:
            engine.dispose()

    @pytest.fixture
    def store(self, make_store: StoreFactory, tmp_path: Path) -> PlatformStore:
        store = make_store()
        assert store.bootstrap(tmp_path / "admin_key") is not None
        return store

    @pytest.fixture
    def default_project(self, store: PlatformStore) -> str:
        org = store.organization()
        assert org is not None and org.default_project_id is not None
        return org.default_project_id

    # --- bootstrap ------------------------------------------------------------------------

    def test_bootstrap_runs_once(self, make_store: StoreFactory, tmp_path: Path) -> None:
        store = make_store()
        key_file = tmp_path / "secrets" / "admin_key"
        secret = store.bootstrap(key_file)
        assert secret is not None and secret.startswith("sk-admin-")
        assert key_file.read_text().strip() == secret
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert sorted(p.name for p in key_file.parent.iterdir()) == ["admin_key"]

        principal = store.authenticate(secret)
        assert principal is not None and principal.is_admin and principal.project_id is None
        org = store.organization()
        assert org is not None and org.id.startswith("org-") and principal.org_id == org.id
        projects, more = store.list_projects()
        assert [p.name for p in projects] == ["Default project"] and not more
        assert projects[0].id == org.default_project_id and projects[0].id.startswith("proj_")

        assert store.bootstrap(key_file) is None
        assert make_store().bootstrap(tmp_path / "other") is None
        assert key_file.read_text().strip() == secret
        assert not (tmp_path / "other").exists()
        assert len(store.list_admin_keys()[0]) == 1 and len(store.list_projects()[0]) == 1

    def test_bootstrap_is_safe_under_concurrency(
        self, make_store: StoreFactory, db_url: str, tmp_path: Path
    ) -> None:
        stores = [make_store() for _ in range(4)]
        results: list[str | None] = [None] * len(stores)
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(stores))

        def run(i: int) -> None:
            try:
                barrier.wait()
                results[i] = stores[i].bootstrap(tmp_path / f"admin_key_{i}")
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        winners = [i for i, r in enumerate(results) if r is not None]
        assert len(winners) == 1
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("admin_key", ".admin"))) == [
            f"admin_key_{winners[0]}"
        ]
        engine = make_engine(db_url)
        try:
            with make_sessionmaker(engine)() as s:
                assert len(s.scalars(select(Organization)).all()) == 1
                assert len(s.scalars(select(Project)).all()) == 1
                assert len(s.scalars(select(ApiKey)).all()) == 1
        finally:
            engine.dispose()

    # --- projects -------------------------------------------------------------------------

    def test_project_crud_and_archive(self, store: PlatformStore, clock: Clock, default_project: str) -> None:
        p = store.create_project("  Research  ")
        assert p.id.startswith("proj_") and p.name == "Research" and p.status == "active"
        assert p.created_at == T0 and p.archived_at is None
        assert store.get_project(p.id) == p
        assert store.get_project("proj_missing") is None

        renamed = store.update_project(p.id, name="Research 2")
        assert renamed.name == "Research 2" and store.get_project(p.id) == renamed

        clock.t += 10
        archived = store.archive_project(p.id)
        assert archived.status == "archived" and archived.archived_at == T0 + 10
        assert store.archive_project(p.id, now=T0 + 99) == archived  # idempotent
        with pytest.raises(ProjectArchived):
            store.update_project(p.id, name="again")
        assert [x.id for x in store.list_projects()[0]] == [default_project]
        assert {x.id for x in store.list_projects(include_archived=True)[0]} == {default_project, p.id}

        with pytest.raises(NotFound):
            store.update_project("proj_missing", name="x")
        with pytest.raises(NotFound):
            store.archive_project("proj_missing")
        with pytest.raises(InvalidArgument):
            store.archive_project(default_project)
        for bad in ("", "   ", "x" * 257):
            with pytest.raises(InvalidArgument):
                store.create_project(bad)

    def test_project_pagination(self, store: PlatformStore, clock: Clock, default_project: str) -> None:
        created = [default_project]
        for i in range(6):
            clock.t += 1 if i % 2 else 0  # some share a timestamp: ties break by id
            created.append(store.create_project(f"p{i}").id)
        seen: list[str] = []
        after = None
        pages = 0
        while True:
            page, more = store.list_projects(after=after, limit=3)
            pages += 1
            seen += [p.id for p in page]
            if not more:
                break
            after = page[-1].id
        assert pages == 3 and sorted(seen) == sorted(created) and len(seen) == len(set(seen))
        times = [store.get_project(i).created_at for i in seen]  # type: ignore[union-attr]
        assert times == sorted(times)
        assert store.list_projects(after=seen[-1]) == ([], False)
        assert store.list_projects(limit=7) == store.list_projects(limit=100)
        assert store.list_projects(limit=7)[1] is False
        assert store.list_projects(limit=6)[1] is True
        with pytest.raises(InvalidArgument):
            store.list_projects(after="proj_unknown")
        for bad in (0, 101):
            with pytest.raises(InvalidArgument):
                store.list_projects(limit=bad)

    # --- service accounts and keys --------------------------------------------------------

    def test_service_account_key_authenticates(self, store: PlatformStore, default_project: str) -> None:
        account, created = store.create_service_account(default_project, "ci bot")
        assert account.id.startswith("svc_acct_") and account.role == "member"
        assert created.secret.startswith("sk-svcacct-")
        assert created.secret not in repr(created)
        assert created.key.redacted_value == "sk-svcacct-..." + created.secret[-4:]
        assert created.key.owner == KeyOwner("service_account", account.id, "ci bot")

        principal = store.authenticate(created.secret)
        assert principal == Principal(
            key_id=created.key.id, kind="project", project_id=default_project,
            org_id=store.organization().id, scopes="all", owner=created.key.owner,  # type: ignore[union-attr]
        )
        assert principal.allows("chat", write=True)
        assert store.list_service_accounts(default_project) == ([account], False)
        assert store.get_service_account(default_project, account.id) == account
        assert store.get_project_key(default_project, created.key.id) == created.key

        assert store.delete_service_account(default_project, account.id)
        assert not store.delete_service_account(default_project, account.id)
        assert store.get_service_account(default_project, account.id) is None
        assert store.authenticate(created.secret) is None
        assert store.list_project_keys(default_project) == ([], False)

    def test_project_keys_scopes_and_revoke(self, store: PlatformStore, default_project: str) -> None:
        ro = store.create_project_key(default_project, "dashboard", scopes="read_only")
        chat = store.create_project_key(default_project, "chat only", scopes=["chat"])
        assert ro.secret.startswith("sk-proj-") and ro.key.owner.type == "user"
        p_ro, p_chat = store.authenticate(ro.secret), store.authenticate(chat.secret)
        assert p_ro is not None and p_ro.scopes == "read_only"
        assert p_ro.allows("models", write=False) and not p_ro.allows("chat", write=True)
        assert p_chat is not None and p_chat.scopes == frozenset({"chat"})
        assert not p_chat.allows("embeddings", write=True)
        keys, more = store.list_project_keys(default_project)
        assert {k.id for k in keys} == {ro.key.id, chat.key.id} and not more

        assert store.revoke(ro.key.id)
        assert not store.revoke(ro.key.id)
        assert store.authenticate(ro.secret) is None
        assert store.get_project_key(default_project, ro.key.id) is None
        assert store.delete_project_key(default_project, chat.key.id)
        assert store.authenticate(chat.secret) is None
        assert store.list_project_keys(default_project) == ([], False)

        with pytest.raises(InvalidArgument):
            store.create_project_key(default_project, "bad", scopes=["images"])
        with pytest.raises(NotFound):
            store.create_project_key("proj_missing", "x")
        with pytest.raises(NotFound):
            store.create_project_key(default_project, "x", owner=KeyOwner("service_account", "svc_acct_no", "n"))

    def test_admin_keys(self, store: PlatformStore, default_project: str) -> None:
        created = store.create_admin_key("automation")
        assert created.secret.startswith("sk-admin-") and created.key.kind == "admin"
        assert created.key.project_id is None
        keys, _ = store.list_admin_keys()
        assert created.key.id in {k.id for k in keys} and len(keys) == 2
        assert store.get_admin_key(created.key.id) == created.key
        project_key = store.create_project_key(default_project, "p")
        assert store.get_admin_key(project_key.key.id) is None
        assert not store.delete_admin_key(project_key.key.id)
        assert store.authenticate(project_key.secret) is not None
        assert store.delete_admin_key(created.key.id)
        assert store.authenticate(created.secret) is None
        assert store.get_admin_key(created.key.id) is None

    def test_rotation_overlap(self, store: PlatformStore, default_project: str) -> None:
        original = store.create_project_key(default_project, "rotating")
        key_id = original.key.id
        second = store.rotate(key_id, overlap_seconds=60, now=T0)
        assert second.startswith("sk-proj-") and second != original.secret
        assert store.get_project_key(default_project, key_id).redacted_value.endswith(second[-4:])  # type: ignore[union-attr]
        assert store.authenticate(second, now=T0 + 1000) is not None
        assert store.authenticate(original.secret, now=T0 + 59) is not None
        assert store.authenticate(original.secret, now=T0 + 60) is None

        third = store.rotate(key_id, overlap_seconds=60, now=T0 + 10)  # replaces the previous secret
        assert store.authenticate(original.secret, now=T0 + 11) is None
        assert store.authenticate(second, now=T0 + 69) is not None
        assert store.authenticate(second, now=T0 + 70) is None
        assert store.authenticate(third, now=T0 + 70) is not None

        fourth = store.rotate(key_id, overlap_seconds=0, now=T0 + 20)
        assert store.authenticate(third, now=T0 + 20) is None
        assert store.authenticate(fourth, now=T0 + 20).key_id == key_id  # type: ignore[union-attr]

        with pytest.raises(InvalidArgument):
            store.rotate(key_id, overlap_seconds=-1)
        assert store.revoke(key_id)
        with pytest.raises(NotFound):
            store.rotate(key_id)

    def test_revoked_key_in_overlap_window_is_refused(self, store: PlatformStore, default_project: str) -> None:
        created = store.create_project_key(default_project, "k")
        new = store.rotate(created.key.id, overlap_seconds=3600, now=T0)
        store.revoke(created.key.id)
        assert store.authenticate(created.secret, now=T0 + 1) is None
        assert store.authenticate(new, now=T0 + 1) is None

    def test_archived_project_keys_stop_working(self, store: PlatformStore) -> None:
        project = store.create_project("temp")
        key = store.create_project_key(project.id, "k")
        _, sa_key = store.create_service_account(project.id, "bot")
        assert store.authenticate(key.secret) is not None and store.authenticate(sa_key.secret) is not None
        store.archive_project(project.id)
        assert store.authenticate(key.secret) is None
        assert store.authenticate(sa_key.secret) is None
        with pytest.raises(ProjectArchived):
            store.create_project_key(project.id, "k2")
        with pytest.raises(ProjectArchived):
            store.create_service_account(project.id, "bot2")

    def test_cross_project_isolation(self, store: PlatformStore) -> None:
        a, b = store.create_project("a"), store.create_project("b")
        key_a = store.create_project_key(a.id, "ka")
        acct_a, sa_key_a = store.create_service_account(a.id, "bot-a")
        key_b = store.create_project_key(b.id, "kb")
        assert {k.id for k in store.list_project_keys(a.id)[0]} == {key_a.key.id, sa_key_a.key.id}
        assert [k.id for k in store.list_project_keys(b.id)[0]] == [key_b.key.id]
        assert store.list_service_accounts(b.id) == ([], False)
        assert store.get_project_key(b.id, key_a.key.id) is None
        assert store.get_service_account(b.id, acct_a.id) is None
        assert not store.delete_project_key(b.id, key_a.key.id)
        assert not store.delete_service_account(b.id, acct_a.id)
        assert store.authenticate(key_a.secret).project_id == a.id  # type: ignore[union-attr]
        with pytest.raises(InvalidArgument):
            store.list_project_keys(b.id, after=key_a.key.id)
        with pytest.raises(NotFound):
            store.create_project_key(b.id, "x", owner=KeyOwner("service_account", acct_a.id, "bot-a"))
        with pytest.raises(NotFound):
            store.list_project_keys("proj_missing")

    def test_authenticate_rejects_unknown_and_foreign_secrets(
        self, store: PlatformStore, make_store: StoreFactory, default_project: str
    ) -> None:
        key = store.create_project_key(default_project, "k")
        for junk in ("", "Bearer x", "sk-proj-" + "x" * 40, key.secret + "x", key.secret[:-1], "x" * 10_000):
            assert store.authenticate(junk) is None
        other = make_store(b"z" * 32)  # a different server secret: same database, no key matches
        assert other.authenticate(key.secret) is None
        assert store.authenticate(key.secret) is not None

    def test_secrets_are_not_stored(self, store: PlatformStore, default_project: str) -> None:
        key = store.create_project_key(default_project, "k")
        rotated = store.rotate(key.key.id, overlap_seconds=60)
        with store._sessions() as s:
            for row in s.scalars(select(ApiKey)):
                values = " ".join(str(v) for v in vars(row).values())
                assert key.secret not in values and rotated not in values
                assert key.secret[8:] not in values and rotated[8:] not in values

    def test_touch_batches_last_used(self, store: PlatformStore, default_project: str) -> None:
        k1 = store.create_project_key(default_project, "1")
        k2 = store.create_project_key(default_project, "2")
        assert k1.key.last_used_at is None

        def last_used(key_id: str) -> int | None:
            record = store.get_project_key(default_project, key_id)
            assert record is not None
            return record.last_used_at

        store.touch(set(), T0)
        store.touch({k1.key.id, k2.key.id}, T0 + 5)
        assert last_used(k1.key.id) == last_used(k2.key.id) == T0 + 5
        store.touch({k1.key.id}, T0 + 3)  # never moves backwards
        assert last_used(k1.key.id) == T0 + 5
        store.touch({k2.key.id, "key_missing"}, T0 + 9)
        assert last_used(k1.key.id) == T0 + 5 and last_used(k2.key.id) == T0 + 9
