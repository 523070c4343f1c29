"""A local stand-in for the Hugging Face Hub, for tests without internet.

``LocalHub`` is a small stdlib ``http.server`` on ``127.0.0.1`` (ephemeral port, background
thread) that keeps model repositories in memory, with git-like commits and branches. It
answers the routes the real client code calls for ``create_repo`` / ``create_branch`` /
``create_commit`` (``upload_folder``), ``hf_hub_download`` / ``snapshot_download`` /
``from_pretrained`` and ``ModelCard.load``:

==========================================================  =====================================
``POST /api/repos/create``                                    create a repo (409 if it exists)
``POST /api/validate-yaml``                                   ``{"errors": [], "warnings": []}``
``POST /api/models/{repo}/preupload/{rev}``                   ``uploadMode: "regular"`` for all
``POST /api/models/{repo}/commit/{rev}``                      NDJSON, base64 file content
``POST /api/models/{repo}/branch/{branch}``                   create a branch (409 if it exists)
``GET  /api/models/{repo}[/revision/{rev}]``                  ``sha``, ``siblings``, ``private``
``GET  /api/models/{repo}/tree/{rev}[/{path}]``               tree listing (``recursive=true``)
``POST /api/models/{repo}/paths-info/{rev}``                  info on given paths
``GET  /api/models/{repo}/refs``                              branches
``HEAD|GET /{repo}/resolve/{rev}/{path}``                     ``X-Repo-Commit``, ``ETag``, size
``GET  /api/agent-harnesses``                                 404 (user-agent registry, optional)
==========================================================  =====================================

Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) as on
the Hub, so the client raises its usual exception types; with ``echo_authorization_in_errors``
their message quotes the request's ``Authorization`` header (the token), to test redaction. Every request is recorded
(``LocalHub.requests``, without header values, so a test can also assert which token was
sent through ``LocalHub.authorizations``); unknown routes answer 404 and are listed in
``LocalHub.unhandled`` so a test notices a route the client started to need.

Pointing the clients at it (``hub`` fixture below)
--------------------------------------------------
``huggingface_hub.constants`` reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` **once, at import**,
and the test suite's ``conftest.py`` imports everything with ``HF_HUB_OFFLINE=1``. What works:

* **this process**: patch, for the duration of one test, ``constants.ENDPOINT``,
  ``constants.HUGGINGFACE_CO_URL_TEMPLATE`` (``hf_hub_url`` formats it), ``constants.HF_HUB_OFFLINE``
  (read at call time by ``is_offline_mode()``, which transformers also calls),
  ``constants.HF_HUB_CACHE`` (a per-test cache: the cache is keyed by repo id, not by
  endpoint) and the ``endpoint`` of ``huggingface_hub.hf_api.api`` (the module-level ``HfApi``
  behind the functional API, built at import time). Every other place reads ``constants.*`` at
  call time (checked for huggingface_hub 2.4 and transformers 5.23).
* **fresh subprocesses** (e.g. loading with remote code only): pass ``LocalHub.client_env()``,
  which sets ``HF_ENDPOINT`` / ``HF_HUB_OFFLINE=0`` / ``HF_HOME`` before the child imports
  anything. That is the way a user would do it and needs no patching.

``monkeypatch`` restores all of it after the test, so ``HF_HUB_OFFLINE=1`` holds again for the
rest of the suite.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

_COMMIT_COUNTER = itertools.count()


def git_blob_oid(content: bytes) -> str:
    """The git object id of a blob: what the Hub reports as ``oid`` / ``ETag`` of a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class StoredCommit:
    """One commit: a full snapshot of the repository's files."""

    oid: str
    parent: str | None
    message: str
    files: dict[str, bytes]


@dataclass
class StoredRepo:
    """A model repository: commits by oid and branches pointing at them."""

    repo_id: str
    private: bool
    commits: dict[str, StoredCommit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def add_commit(self, parent: str | None, message: str, files: dict[str, bytes]) -> StoredCommit:
        digest = hashlib.sha1(f"{self.repo_id}\0{parent}\0{message}\0{next(_COMMIT_COUNTER)}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_oid(files[path]).encode())
        commit = StoredCommit(digest.hexdigest(), parent, message, dict(files))
        self.commits[commit.oid] = commit
        return commit

    def resolve(self, revision: str) -> StoredCommit | None:
        """A branch name or a full commit oid -> commit (``None`` if unknown)."""
        oid = self.branches.get(revision, revision)
        return self.commits.get(oid)


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query string


class _HubError(Exception):
    """An HTTP error answer, with the Hub's ``X-Error-Code``."""

    def __init__(self, status: int, message: str, error_code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.error_code = status, message, error_code
        self.extra = extra  # more fields of the JSON body


class LocalHub:
    """In-memory Hub on ``127.0.0.1:<ephemeral port>``; ``start()`` / ``stop()`` or use as context."""

    def __init__(self) -> None:
        self.repos: dict[str, StoredRepo] = {}
        self.requests: list[RecordedRequest] = []
        self.authorizations: list[str] = []  # Authorization header values, for token assertions
        self.unhandled: list[RecordedRequest] = []
        #: When set, the commit route reads the whole payload, then answers this status (a
        #: server failure mid-way through an upload); nothing is committed.
        self.fail_commit_status: int | None = None
        #: When set, every error answer quotes the request's Authorization header (token
        #: included) in its message, as a misbehaving proxy or server might.
        self.echo_authorization_in_errors = False
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> LocalHub:
        hub = self

        class Handler(_HubRequestHandler):
            local_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="local-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "LocalHub is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def client_env(self, hf_home: str | Path) -> dict[str, str]:
        """Environment variables pointing a *fresh* process's HF clients at this server."""
        return {
            "HF_ENDPOINT": self.endpoint,
            "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0",
            "HF_HOME": str(hf_home),
            "HF_HUB_CACHE": str(Path(hf_home) / "hub"),
            "HF_MODULES_CACHE": str(Path(hf_home) / "modules"),  # where remote code is imported from
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
        }

    # --- inspection helpers for tests ------------------------------------------------------

    def commit_requests(self, repo_id: str | None = None) -> list[RecordedRequest]:
        """Requests to the commit route (of one repo, or of any)."""
        marker = f"/api/models/{repo_id}/commit/" if repo_id else "/commit/"
        return [request for request in self.requests if request.method == "POST" and marker in request.path]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        commit = self.repos[repo_id].resolve(revision)
        assert commit is not None, f"{repo_id}@{revision} does not exist"
        return commit.files

    # --- route implementations (called under the lock) --------------------------------------

    def _repo(self, repo_id: str) -> StoredRepo:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise _HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def _commit(self, repo: StoredRepo, revision: str) -> StoredCommit:
        commit = repo.resolve(revision)
        if commit is None:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def create_repo(self, body: dict[str, Any]) -> tuple[int, Any]:
        name, organization = body.get("name"), body.get("organization")
        if body.get("type", "model") != "model":
            raise _HubError(400, "this stand-in hosts model repos only")
        repo_id = f"{organization}/{name}" if organization else f"user/{name}"
        if repo_id in self.repos:
            # The Hub's 409 names the existing repo's url; create_repo(exist_ok=True) reads it.
            raise _HubError(409, "You already created this model repo", url=f"{self.endpoint}/{repo_id}")
        repo = StoredRepo(repo_id, private=body.get("visibility") == "private" or bool(body.get("private")))
        # Like the Hub: a new repo has an initial commit holding .gitattributes.
        initial = repo.add_commit(
            None, "initial commit", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
        )
        repo.branches["main"] = initial.oid
        self.repos[repo_id] = repo
        return 200, {"url": f"{self.endpoint}/{repo_id}", "name": repo_id, "id": repo_id}

    def create_branch(self, repo_id: str, branch: str, body: dict[str, Any]) -> tuple[int, Any]:
        repo = self._repo(repo_id)
        if branch in repo.branches:
            raise _HubError(409, f"Branch {branch} already exists")
        start = self._commit(repo, body.get("startingPoint") or "main")
        repo.branches[branch] = start.oid
        return 200, {}

    def preupload(self, repo_id: str, revision: str, body: dict[str, Any]) -> tuple[int, Any]:
        self._commit(self._repo(repo_id), revision)
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in body.get("files", [])]
        return 200, {"files": files, "commitOid": self.repos[repo_id].branches.get(revision)}

    def commit(self, repo_id: str, revision: str, raw: bytes) -> tuple[int, Any]:
        repo = self._repo(repo_id)
        if revision not in repo.branches:
            raise _HubError(404, f"Invalid rev id: {revision} (commits go to a branch)", "RevisionNotFound")
        lines = [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "commit payload must start with a header line")
        if self.fail_commit_status is not None:
            raise _HubError(self.fail_commit_status, "Internal Error - simulated failure of the commit route")
        header = lines[0]["value"]
        parent = repo.branches[revision]
        if header.get("parentCommit") and header["parentCommit"] != parent:
            raise _HubError(412, "A commit has happened since the parent commit")
        files = dict(repo.commits[parent].files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise _HubError(400, f"unsupported encoding {value.get('encoding')!r}")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {path: data for path, data in files.items() if not path.startswith(prefix)}
            else:  # lfsFile / copies need the large-file protocol, which this stand-in never offers
                raise _HubError(400, f"unsupported commit operation {key!r}")
        commit = repo.add_commit(parent, header.get("summary", ""), files)
        repo.branches[revision] = commit.oid
        return 200, {
            "commitUrl": f"{self.endpoint}/{repo_id}/commit/{commit.oid}",
            "commitOid": commit.oid,
            "pullRequestUrl": None,
            "success": True,
        }

    def repo_info(self, repo_id: str, revision: str) -> tuple[int, Any]:
        repo = self._repo(repo_id)
        commit = self._commit(repo, revision)
        return 200, {
            "id": repo_id,
            "modelId": repo_id,
            "sha": commit.oid,
            "private": repo.private,
            "siblings": [{"rfilename": path} for path in sorted(commit.files)],
            "tags": [],
        }

    def _entries(self, commit: StoredCommit, prefix: str, recursive: bool) -> list[dict[str, Any]]:
        prefix = prefix.strip("/")
        base = f"{prefix}/" if prefix else ""
        entries: dict[str, dict[str, Any]] = {}
        for path, content in sorted(commit.files.items()):
            if not path.startswith(base):
                continue
            parts = path[len(base) :].split("/")
            # Folders above the file (all of them when recursive, the first one otherwise).
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                folder = base + "/".join(parts[:depth])
                entries.setdefault(
                    folder,
                    {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0, "path": folder},
                )
            if recursive or len(parts) == 1:
                entries[path] = {"type": "file", "oid": git_blob_oid(content), "size": len(content), "path": path}
        return list(entries.values())

    def tree(self, repo_id: str, revision: str, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        commit = self._commit(self._repo(repo_id), revision)
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries = self._entries(commit, path, recursive)
        if path and not entries:
            raise _HubError(404, f"{path} does not exist", "EntryNotFound")
        return 200, entries

    def paths_info(self, repo_id: str, revision: str, paths: list[str]) -> tuple[int, Any]:
        commit = self._commit(self._repo(repo_id), revision)
        every = {entry["path"]: entry for entry in self._entries(commit, "", recursive=True)}
        return 200, [every[path] for path in paths if path in every]

    def refs(self, repo_id: str) -> tuple[int, Any]:
        repo = self._repo(repo_id)
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid} for name, oid in repo.branches.items()
        ]
        return 200, {"branches": branches, "tags": [], "converts": []}

    def resolve_file(self, repo_id: str, revision: str, path: str) -> tuple[StoredCommit, bytes]:
        commit = self._commit(self._repo(repo_id), revision)
        if path not in commit.files:
            raise _HubError(404, f"Entry not found: {path}", "EntryNotFound")
        return commit, commit.files[path]


def _split_repo(parts: list[str]) -> tuple[str, list[str]]:
    """``["user", "name", rest...]`` -> ``("user/name", rest)``."""
    if len(parts) < 2:
        raise _HubError(404, "no repository in path", "RepoNotFound")
    return f"{parts[0]}/{parts[1]}", parts[2:]


class _HubRequestHandler(BaseHTTPRequestHandler):
    """Dispatches one request to ``local_hub`` (set on a subclass per server)."""

    local_hub: LocalHub
    server_version = "LocalHub/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output quiet
        pass

    def do_HEAD(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch("HEAD")

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _form_or_json(self, body: bytes) -> dict[str, Any]:
        """A request body as a dict: JSON, or a form (``paths-info`` posts ``paths=a&paths=b``)."""
        if not body:
            return {}
        if "application/x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
            return {key: values if key == "paths" else values[0] for key, values in parse_qs(body.decode()).items()}
        try:
            return json.loads(body)
        except json.JSONDecodeError as error:
            raise _HubError(400, f"invalid JSON body: {error}") from None

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, head_only: bool = False) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def _send_json(
        self, status: int, value: Any, headers: dict[str, str] | None = None, head_only: bool = False
    ) -> None:
        self._send(
            status, json.dumps(value).encode(), {"Content-Type": "application/json", **(headers or {})}, head_only
        )

    def _dispatch(self, method: str) -> None:
        hub = self.local_hub
        url = urlsplit(self.path)
        # Segments are unquoted one by one: a branch "a/b" arrives as "a%2Fb" in API routes.
        parts = [unquote(part) for part in url.path.strip("/").split("/")]
        record = RecordedRequest(method, url.path)
        body = self._read_body() if method == "POST" else b""
        with hub._lock:
            hub.requests.append(record)
            if self.headers.get("Authorization"):
                hub.authorizations.append(self.headers["Authorization"])
            try:
                if parts[:1] == ["api"]:
                    self._api(method, parts[1:], body, parse_qs(url.query), record)
                else:
                    self._resolve(method, parts)
            except _HubError as error:
                message = error.message
                if hub.echo_authorization_in_errors:
                    message += f" (request had Authorization: {self.headers.get('Authorization')})"
                headers = {"X-Error-Code": error.error_code} if error.error_code else {}
                headers["X-Error-Message"] = message
                self._send_json(error.status, {"error": message, **error.extra}, headers, head_only=method == "HEAD")

    def _api(
        self, method: str, parts: list[str], body: bytes, query: dict[str, list[str]], record: RecordedRequest
    ) -> None:
        hub = self.local_hub
        payload = self._form_or_json(body) if len(parts) < 2 or parts[-2] != "commit" else {}
        if method == "POST" and parts == ["repos", "create"]:
            return self._send_json(*hub.create_repo(payload))
        if method == "POST" and parts == ["validate-yaml"]:
            return self._send_json(200, {"errors": [], "warnings": []})
        if method == "GET" and parts == ["agent-harnesses"]:
            # huggingface_hub fetches this registry for its user-agent; a 404 makes it skip caching
            # it (in the real HF_HOME, which the constants point to).
            raise _HubError(404, "no agent harness registry here")
        if parts[:1] == ["models"]:
            repo_id, rest = _split_repo(parts[1:])
            if method == "POST" and rest[:1] == ["preupload"] and len(rest) == 2:
                return self._send_json(*hub.preupload(repo_id, rest[1], payload))
            if method == "POST" and rest[:1] == ["commit"] and len(rest) == 2:
                return self._send_json(*hub.commit(repo_id, rest[1], body))
            if method == "POST" and rest[:1] == ["branch"] and len(rest) == 2:
                return self._send_json(*hub.create_branch(repo_id, rest[1], payload))
            if method == "POST" and rest[:1] == ["paths-info"] and len(rest) == 2:
                return self._send_json(*hub.paths_info(repo_id, rest[1], list(payload.get("paths", []))))
            if method == "GET" and not rest:
                return self._send_json(*hub.repo_info(repo_id, "main"))
            if method == "GET" and rest[:1] == ["revision"] and len(rest) == 2:
                return self._send_json(*hub.repo_info(repo_id, rest[1]))
            if method == "GET" and rest[:1] == ["tree"] and len(rest) >= 2:
                return self._send_json(*hub.tree(repo_id, rest[1], "/".join(rest[2:]), query))
            if method == "GET" and rest == ["refs"]:
                return self._send_json(*hub.refs(repo_id))
        hub.unhandled.append(record)
        raise _HubError(404, f"LocalHub does not implement {method} /api/{'/'.join(parts)}")

    def _resolve(self, method: str, parts: list[str]) -> None:
        hub = self.local_hub
        repo_id, rest = _split_repo(parts)
        if method not in ("GET", "HEAD") or len(rest) < 3 or rest[0] != "resolve":
            hub.unhandled.append(RecordedRequest(method, "/" + "/".join(parts)))
            raise _HubError(404, "not found")
        commit, content = hub.resolve_file(repo_id, rest[1], "/".join(rest[2:]))
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{git_blob_oid(content)}"',
            "Content-Type": "application/octet-stream",
        }
        self._send(200, content, headers, head_only=method == "HEAD")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHub]:
    """A started :class:`LocalHub`, with this process's HF clients pointed at it for one test.

    See the module docstring for why these constants are patched; ``monkeypatch`` undoes it all.
    """
    import huggingface_hub
    from huggingface_hub import constants

    server = LocalHub().start()
    hf_home = tmp_path_factory.mktemp("hf_home")
    env = server.client_env(hf_home)
    monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", env["HF_HUB_CACHE"])
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)  # never pick up a stored token
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", server.endpoint)
    # For code that reads the environment itself, and for subprocesses started without client_env().
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        yield server
    finally:
        server.stop()
