"""Shared fixtures and helpers: real workspaces in temp folders, real generated JPEGs, the
real ``disgorge`` console script. Test files import the plain helpers with
``from conftest import ...``; fixtures are found by pytest."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select

from disgorge import Workspace
from disgorge.access.roles import ROLES
from disgorge.consent import ConsentImportReport
from disgorge.ingest import IngestReport
from disgorge.samples import synthetic_photo

if TYPE_CHECKING:
    import httpx

ROOT = Path(__file__).resolve().parents[1]
SHARED_FACES = ROOT.parent / "shared" / "data" / "faces"


def _console_script() -> str:
    exe = Path(sys.executable).parent / "disgorge"
    if exe.exists():
        return str(exe)
    return shutil.which("disgorge") or str(exe)


#: the installed ``disgorge`` console script (the tests run the real CLI, not ``cli.app``)
DISGORGE = _console_script()


def sha(data: bytes) -> str:
    """The sha256 hex digest disgorge addresses a photo by."""
    return hashlib.sha256(data).hexdigest()


#: what the ``shared_faces`` fixture gives: ``shared_faces("lfw10x10") -> Path``
FaceFolder = Callable[[str], Path]


def shared_faces_dir(sub: str = "") -> Path:
    """A folder of the shared real photos (``../shared/data/faces/<sub>``), or skip saying why.

    A plain function, so that module-scoped fixtures can call it too."""
    path = SHARED_FACES / sub
    if not path.exists():
        pytest.skip(f"real test photos not present at {path} (../shared is not checked out)")
    return path


@pytest.fixture
def shared_faces() -> FaceFolder:
    """``shared_faces("lfw10x10")``: a folder of the shared real photos, or skip saying why."""
    return shared_faces_dir


@pytest.fixture
def ws(tmp_path: Path):
    """A fresh workspace with one source named 'app'."""
    workspace = Workspace.init(tmp_path / "ws", actor="tester")
    workspace.add_source("app")
    yield workspace
    workspace.close()


#: the people of ``photo_dir`` and of :func:`smoke_workspace`
PEOPLE = ["Ada_Lovelace", "Alan_Turing", "Grace_Hopper"]
#: who refused ai_training in :func:`smoke_workspace`
DENIED = "Alan_Turing"
#: the policy text of the workspaces that train face recognition
FACE_POLICY = b"we train face recognition on your photos, with your explicit consent"


def write_people(root: Path, per_person: int) -> Path:
    """LFW-style folder of generated JPEGs: the PEOPLE x ``per_person``, NAME/NAME_000i.jpg."""
    for person, name in enumerate(PEOPLE):
        (root / name).mkdir(parents=True)
        for i in range(per_person):
            (root / name / f"{name}_{i:04d}.jpg").write_bytes(synthetic_photo(person, i))
    return root


def tiny_photos(folder: Path, people: Sequence[str], per_person: int) -> Path:
    """Small (64 px) generated JPEGs, PERSON/i.jpg: for tests where faces do not matter."""
    for p, person in enumerate(people):
        (folder / person).mkdir(parents=True)
        for i in range(per_person):
            (folder / person / f"{i}.jpg").write_bytes(synthetic_photo(p, i, size=64))
    return folder


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """LFW-style folder: 3 people x 4 generated JPEGs, NAME/NAME_000i.jpg."""
    return write_people(tmp_path / "photos", 4)


def add_source_with_policy(
    ws: Workspace,
    name: str,
    *,
    version: str = "2013",
    text: bytes = FACE_POLICY,
    allows: Sequence[str] = ("ai_training", "biometric_processing"),
    at: str = "2013-01-01",
    kind: str = "app",
) -> None:
    """A source and its one policy, in force from ``at``, allowing ``allows``."""
    ws.add_source(name, kind=kind, at=at)
    ws.add_policy(name, version, text=text, effective_from=at, allows=list(allows), at=at)


def import_consent_csv(ws: Workspace, path: Path, rows: Iterable[str], *, at: str) -> ConsentImportReport:
    """Write a consent CSV (the header, then ``subject,purpose,decision,at`` rows) and import it."""
    path.write_text("subject,purpose,decision,at\n" + "".join(f"{row}\n" for row in rows))
    return ws.import_consent(path, at=at)


def smoke_workspace(tmp_path: Path, *, kind: str = "app") -> Workspace:
    """The smoke flow's workspace in ``tmp_path/ws``: source lfw (of ``kind``), a policy allowing
    ai_training and biometric processing, 3 people x 2 photos (``tmp_path/photos``), and
    DENIED refusing ai_training. The caller closes it."""
    ws = Workspace.init(tmp_path / "ws", actor="tester", at="2013-01-01")
    add_source_with_policy(ws, "lfw", text=b"p", kind=kind)
    ws.ingest(write_people(tmp_path / "photos", 2), source="lfw", subject_from="dirname", at="2013-06-01")
    import_consent_csv(
        ws, tmp_path / "consent.csv", [f"{DENIED},ai_training,denied,2013-07-01"], at="2013-07-01"
    )
    return ws


_READ_CHILD = """
import os, sys
root, prefix = sys.argv[1], sys.argv[2]
out = sys.stdout.buffer
walk = os.walk(root) if not prefix else [(root, [], os.listdir(root))]
for dirpath, _dirs, files in walk:
    for name in sorted(f for f in files if f.startswith(prefix)):
        path = os.path.join(dirpath, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            continue
        rel = os.path.relpath(path, root).encode()
        out.write(len(rel).to_bytes(4, "little") + rel + len(data).to_bytes(8, "little") + data)
"""


def files_elsewhere(root: Path, prefix: str = "") -> dict[str, bytes]:
    """Every regular file under ``root`` (relative path -> bytes), read by a child process;
    with ``prefix``, only the files directly in ``root`` whose names start with it.

    A test that holds a workspace open must not open the catalog's files itself: closing any
    descriptor of a database file drops every POSIX lock the process holds on it (SQLite's
    "How To Corrupt An SQLite Database File", 2.2). A child process holds no locks to lose.
    """
    raw = subprocess.run(
        [sys.executable, "-I", "-c", _READ_CHILD, str(root), prefix],
        capture_output=True,
        check=True,
        timeout=300,
    ).stdout
    files: dict[str, bytes] = {}
    at = 0
    while at < len(raw):
        size = int.from_bytes(raw[at : at + 4], "little")
        rel = raw[at + 4 : at + 4 + size].decode()
        at += 4 + size
        size = int.from_bytes(raw[at : at + 8], "little")
        files[rel] = raw[at + 8 : at + 8 + size]
        at += 8 + size
    return files


def read_elsewhere(path: Path) -> bytes:
    """One file's bytes, read by a child process (see :func:`files_elsewhere`); b"" if missing."""
    return files_elsewhere(path.parent, path.name).get(path.name, b"")


# -- the real CLI ------------------------------------------------------------------------------
def cli_env(**extra: str) -> dict[str, str]:
    """The environment the tests run the CLI in: no ``DISGORGE_*`` variable of the caller's
    (no workspace, no KEK variable), a known actor, wide plain output; ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISGORGE_")}
    env.update(DISGORGE_ACTOR="cli-test", COLUMNS="200", NO_COLOR="1", TERM="dumb")
    env.update(extra)
    return env


def cli(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real ``disgorge`` console script once, in :func:`cli_env` (plus ``env``)."""
    return subprocess.run(
        [DISGORGE, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=cli_env(**(env or {})),
        timeout=timeout,
    )


def run_cli_many(*argvs: list[str | Path]) -> list[subprocess.CompletedProcess[str]]:
    """Run the real ``disgorge`` console script once per argv, all at the same time."""
    env = cli_env()
    procs = [
        (
            argv := [DISGORGE, *map(str, args)],
            subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env),
        )
        for args in argvs
    ]
    results = []
    for argv, proc in procs:
        out, err = proc.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
    return results


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- looking inside a workspace from the outside ----------------------------------------------
def count(ws: Workspace, model: Any, *where: Any) -> int:
    """Rows of ``model`` (a catalog table) matching ``where``."""
    with ws.reader() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def raw_scan(root: Path, needles: dict[str, bytes]) -> list[tuple[str, str]]:
    """(needle label, file) for every needle found in any file under ``root``: read whole, raw."""
    hits = []
    for rel, data in sorted(files_elsewhere(root).items()):  # a child reads the catalog's files
        hits += [(label, rel) for label, n in needles.items() if n in data]
    return hits


def catalog_db(ws: Workspace) -> Path:
    """The catalog's SQLite file."""
    url = ws.config.resolved_catalog_url()
    assert url.startswith("sqlite:///")
    return Path(url.removeprefix("sqlite:///"))


def sql(ws: Workspace, statement: str, *params: object) -> list[tuple]:
    """Run one statement on the catalog with the plain sqlite3 module (an outside edit)."""
    with closing(sqlite3.connect(catalog_db(ws))) as con:
        rows = con.execute(statement, params).fetchall()
        con.commit()
    return rows


def write_rows(path: Path, text: str) -> Path:
    """Write a CSV/JSONL file (leading newlines dropped), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.lstrip("\n"), encoding="utf-8")
    return path


# -- bad input: what survives, what must not leak ---------------------------------------------
# The test_bad_*, test_tampered_* and test_cli_errors files hand disgorge every broken or hostile
# thing a user can. Each test checks what a user relies on: a clear message that names the file
# or row and the reason, and that nothing already stored is lost or duplicated. Real files, real
# SQLite, the real CLI; no mocks. Messages and the audit log must never carry an external subject
# id (SECRET_IDS are used as subject ids throughout).
#: external subject ids: they may appear in the user's own inputs, never in our outputs
SECRET_IDS = ("Ada_Lovelace", "Alan_Turing", "Grace_Hopper")


def ingest_good(ws: Workspace, photo_dir: Path) -> dict[str, bytes]:
    """Ingest the 12 good photos of ``photo_dir``; return sha256 -> original bytes."""
    report = ws.ingest(photo_dir, source="app", subject_from="dirname")
    assert report.ok and report.ingested == 12, report.to_dict()
    return {sha(p.read_bytes()): p.read_bytes() for p in sorted(photo_dir.rglob("*.jpg"))}


def blob_files(ws: Workspace) -> list[Path]:
    root = Path(ws.config.resolved_store_url())
    return [p for p in root.rglob("*") if p.is_file() and ".tmp" not in p.relative_to(root).parts]


def assert_intact(ws: Workspace, stored: dict[str, bytes]) -> None:
    """The catalog holds exactly ``stored`` (no loss, no duplicate), each one decrypting."""
    assert ws.status()["assets"] == len(stored)
    assert len(blob_files(ws)) == len(stored), "a blob was written for something not catalogued"
    for digest, data in stored.items():
        assert ws.read_asset(digest) == data


def assert_private(ws: Workspace, *messages: str) -> None:
    """No external subject id in the given messages nor anywhere in the audit log."""
    log = json.dumps(ws.audit_events(limit=1000))
    for secret in SECRET_IDS:
        for message in messages:
            assert secret not in message, message
        assert secret not in log


def rejections(report: IngestReport) -> dict[str, str]:
    """An ingest report's refused files: path -> reason."""
    return {r.path: r.reason for r in report.rejected}


# -- the synthetic erasure workspace ----------------------------------------------------------
SYN_PEOPLE = ["Ada_Lovelace", "Alan_Turing", "Grace_Hopper", "Edsger_Dijkstra"]
GROUP = "group.jpg"  # owned by Alan_Turing, shows Grace_Hopper too
REASON = "GDPR Art. 17 request 2024-117"


@dataclass
class Syn:
    template: Path  # closed; copy it before changing
    folder: Path  # the photos, flat, with a manifest next to the folder
    manifest: Path
    photos: dict[str, bytes]  # file name -> bytes
    owner: dict[str, str]  # file name -> owner

    def of(self, person: str) -> dict[str, bytes]:
        return {n: d for n, d in self.photos.items() if self.owner[n] == person}


def _write_photos(folder: Path, people: list[str], per_person: int, *, offset: int = 0) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for p, person in enumerate(people):
        for i in range(per_person):
            data = synthetic_photo(p + offset, i, size=160)
            (folder / f"{person}_{i}.jpg").write_bytes(data)
            out[f"{person}_{i}.jpg"] = data
    return out


def fill_syn_workspace(ws: Workspace, folder: Path, manifest: Path, scratch: Path) -> None:
    """The ``syn`` fixture's story on an empty workspace (any catalog): source ``app``, the 13
    photos with their manifest, biometric consent for everyone, faces analysed, dataset
    ``faces``, a SISA model ``faceid`` and an external model ``vendor`` trained on it."""
    add_source_with_policy(ws, "app")
    report = ws.ingest(folder, source="app", manifest=manifest, at="2013-02-01")
    assert report.ingested == 13 and not report.rejected
    granted = [f"{p},biometric_processing,granted,2013-01-05" for p in SYN_PEOPLE]
    import_consent_csv(ws, scratch / "consent.csv", granted, at="2013-01-05")
    assert ws.analyze(workers=1).embedded_faces >= 9
    ws.build_dataset("faces", purpose="ai_training", at="2014-01-01")
    ws.train_model("faceid", dataset="faces", shards=2, slices=2, at="2014-02-01")
    ws.record_run(
        "vendor-train",
        purpose="ai_training",
        inputs=["faces@1.0.0"],
        outputs=[{"kind": "model", "name": "vendor"}],
        at="2014-03-01",
    )


@pytest.fixture(scope="session")
def syn(tmp_path_factory: pytest.TempPathFactory) -> Syn:
    """Drawn portraits of four people, one photo owned by Alan_Turing that also shows
    Grace_Hopper, faces analysed (dlib finds the drawn faces), a dataset, a SISA face model
    and an "external" model recorded with ``record_run``. Built once: copy it to change it."""
    root = tmp_path_factory.mktemp("syn")
    folder = root / "photos"
    photos = _write_photos(folder, SYN_PEOPLE, 3)
    owner = {n: n.rsplit("_", 1)[0] for n in photos}
    photos[GROUP] = synthetic_photo(9, 0, size=160)
    (folder / GROUP).write_bytes(photos[GROUP])
    owner[GROUP] = "Alan_Turing"
    manifest = root / "manifest.csv"
    manifest.write_text(
        "path,subject,depicted\n"
        + "".join(f"{n},{o},{'Grace_Hopper' if n == GROUP else ''}\n" for n, o in sorted(owner.items()))
    )
    with Workspace.init(root / "ws", actor="tester") as ws:
        fill_syn_workspace(ws, folder, manifest, root)
    return Syn(root / "ws", folder, manifest, photos, owner)


@pytest.fixture
def sws(syn: Syn, tmp_path: Path):
    """A private, open copy of the synthetic workspace."""
    shutil.copytree(syn.template, tmp_path / "ws")
    ws = Workspace.open(tmp_path / "ws", actor="tester")
    yield ws
    ws.close()


def only_request(ws: Workspace) -> str:
    """The id of the workspace's one erasure request."""
    [req] = ws.erasures()
    return req["id"]


# -- the REST API ---------------------------------------------------------------------------
#: one principal per role, named after it (ROLE_USERS["auditor"] == "auditor-1")
ROLE_USERS = {
    "viewer": "viewer-1",
    "auditor": "auditor-1",
    "ml_engineer": "ml-1",
    "privacy_officer": "officer-1",
    "admin": "admin-1",
}


@dataclass
class Api:
    """A running API on loopback and a token per role (plus a second privacy officer)."""

    url: str
    tokens: dict[str, str]  # role (or "officer-2") -> bearer token

    def headers(self, who: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}

    def call(self, who: str | None, method: str, path: str, **kw: Any) -> Any:
        """An ``httpx.Response`` from the API as ``who`` (a role, "officer-2", or None)."""
        import httpx

        headers = {**self.headers(who), **kw.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=120, **kw)

    def wait(self, who: str, path: str, states: Iterable[str], timeout: float = 120) -> dict[str, Any]:
        """GET ``path`` as ``who`` until its ``state`` is one of ``states`` (a job, an erasure);
        the last answer, whatever its state, once ``timeout`` seconds have passed."""
        import time

        give_up = time.monotonic() + timeout
        while True:
            response = self.call(who, "GET", path)
            assert response.status_code == 200, response.text
            view: dict[str, Any] = response.json()
            if view["state"] in set(states) or time.monotonic() > give_up:
                return view
            time.sleep(0.1)


def add_role_tokens(root: Path) -> dict[str, str]:
    """A principal and a token for each role, and a second privacy officer ("officer-2")."""
    with Workspace.open(root, actor="tester") as ws:
        tokens = {}
        for role, name in ROLE_USERS.items():
            ws.add_principal(name, role=role)
            tokens[role] = ws.create_token(name, expires="1d")["token"]
        ws.add_principal("officer-2", role="privacy_officer")
        tokens["officer-2"] = ws.create_token("officer-2", expires="1d")["token"]
    return tokens


@contextlib.contextmanager
def serve_api(root: Path) -> Iterator[Api]:
    """Serve the workspace at ``root`` on 127.0.0.1 (real uvicorn) with a token per role."""
    from disgorge.api import running_server

    tokens = add_role_tokens(root)
    with running_server(root, actor="api-server") as url:
        yield Api(url, tokens)


# -- the web UI in a real browser ---------------------------------------------------------------
#: Debian's chromium and chromium-driver (.ci/run installs them); nothing is downloaded at run time
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def new_browser() -> Any:
    """A headless Chromium driven through chromium-driver (a ``selenium`` WebDriver; the caller
    quits it). Skips saying why when they are not installed, or fails when the environment
    has ``DISGORGE_REQUIRE_BROWSER`` set (CI: a failed install must not pass as a skip)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        why = (
            f"the browser tests need Debian's chromium and chromium-driver; missing {', '.join(missing)} "
            "(apt-get install chromium chromium-driver; .ci/run installs them)"
        )
        if os.environ.get("DISGORGE_REQUIRE_BROWSER"):
            pytest.fail(why)
        pytest.skip(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager never downloads anything
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # driver.get_log("browser")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    return driver


@contextlib.contextmanager
def browsing() -> Iterator[Any]:
    """A headless Chromium (see :func:`new_browser`), quit at the end of the block."""
    driver = new_browser()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium (see :func:`new_browser`), quit after the test."""
    with browsing() as driver:
        yield driver


def ui_login(driver: Any, url: str, name: str, password: str) -> None:
    """Log in through the UI's login page (``url`` is the server's base URL) and wait for the
    next page: one showing who is logged in (``#whoami``), or the login page's ``#error``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{url}/ui/login")
    driver.find_element(By.ID, "username").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()
    WebDriverWait(driver, 30).until(
        lambda d: d.find_elements(By.ID, "whoami") or d.find_elements(By.ID, "error")
    )


# -- the web UI over HTTP -----------------------------------------------------------------------
#: every principal's password in the web UI's tests (the UI refuses fewer than 12 characters)
UI_PASSWORD = "correct horse battery staple"
#: the CSRF token every POST form of the UI carries (framework.py's page rules)
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def token_of(page: httpx.Response) -> str:
    """The CSRF token of the first form on a page: what a browser posts back with the form."""
    found = CSRF.search(page.text)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


@dataclass
class UiSite:
    """A workspace served on loopback (:func:`serve_api`) for the web UI's tests over HTTP: each
    test file subclasses it, adding the fields its fixture's data gives (refs, ids, ...); the
    file's module fixture calls :meth:`close` once its tests are done."""

    api: Api
    root: Path
    #: every client :meth:`client` made (keyword-only, so that subclasses add plain fields)
    clients: list[httpx.Client] = field(default_factory=list, kw_only=True)

    @property
    def url(self) -> str:
        return self.api.url

    def client(self) -> httpx.Client:
        """A client without a session that, like a test of a server, sees redirects as they are."""
        import httpx

        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=120)
        self.clients.append(client)
        return client

    def login(self, name: str, password: str = UI_PASSWORD) -> httpx.Client:
        """A client logged in as ``name`` through the login form, as a browser would."""
        client = self.client()
        form = client.get("/ui/login")
        assert form.status_code == 200, form.text
        answer = client.post(
            "/ui/login", data={"username": name, "password": password, "csrf_token": token_of(form)}
        )
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/ui/"
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()


def post_form(
    client: httpx.Client, path: str, data: Mapping[str, str | list[str]] | None = None
) -> httpx.Response:
    """POST a form to ``path`` with the session's CSRF token (read off the overview), as a
    browser would."""
    token = token_of(client.get("/ui/"))
    return client.post(path, data={**(data or {}), "csrf_token": token})


def assert_scopes_decide(client: httpx.Client, role: str, pages: Mapping[str, str]) -> None:
    """Each of ``pages`` (path -> the scope of the API route showing the same data) as ``role``
    (logged in on ``client``) sees it: with the scope, the page, saying who is logged in (but a
    CSV export); without, a 403 page naming the missing scope."""
    for path, scope in pages.items():
        answer = client.get(path)
        if scope in ROLES[role]:
            assert answer.status_code == 200, (role, path, answer.text[:500])
            assert path.endswith(".csv") or f"({role})</span>" in answer.text, (role, path)
        else:
            assert answer.status_code == 403, (role, path)
            assert 'id="forbidden"' in answer.text and scope in answer.text, (role, path)


def request_erasure(client: httpx.Client, kind: str, ident: str, reason: str) -> str:
    """Ask for an erasure through the UI's form; the new request's id (from the redirect)."""
    made = post_form(client, "/ui/erasures/new", {"kind": kind, "scope_id": ident, "reason": reason})
    assert made.status_code == 303, made.text
    found = re.fullmatch(r"/ui/erasures/([0-9a-f]{32})", made.headers["location"])
    assert found, made.headers["location"]
    return found.group(1)


# -- what every page must be in the browser (driver.execute_script) ------------------------------
#: the controls of a page that lack a label: a control is labelled only by a ``<label for>`` (or a
#: wrapping ``<label>``) with text, and a button by its text too; aria-label, a placeholder or
#: an ``<input type=submit>``'s value is not a label here (framework.py's page rules)
UNLABELLED = """
return [...document.querySelectorAll('input, select, textarea, button')]
  .filter(el => el.type !== 'hidden')
  .filter(el => !(el.labels && [...el.labels].some(l => l.textContent.trim())) &&
                !(el.tagName === 'BUTTON' && el.textContent.trim()))
  .map(el => el.outerHTML.slice(0, 200));
"""
#: ids used more than once on a page (a label or an ARIA reference then points at the first)
DUPLICATE_IDS = """
const ids = [...document.querySelectorAll('[id]')].map((e) => e.id);
return [...new Set(ids.filter((id, i) => ids.indexOf(id) !== i))];
"""
#: the elements the keyboard should reach, in document order
FOCUSABLE = """
return [...document.querySelectorAll('a[href], button, input, select, textarea, summary, [tabindex]')]
  .filter(el => el.type !== 'hidden' && !el.disabled && el.tabIndex >= 0)
  .filter(el => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden');
"""


def console_errors(driver: Any) -> list[str]:
    """The browser console's errors since the last call (a script the CSP refused, a failed
    request). Every page names its icon (base.html), so the browser asks for no /favicon.ico:
    nothing is left out."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
