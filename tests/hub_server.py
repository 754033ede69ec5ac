"""A small in-memory stand-in for the Hugging Face Hub HTTP API, for tests (stdlib only).

It speaks the requests that ``huggingface_hub`` (and through it ``datasets``) makes to push
and read model and dataset repos, so round trips run through the real client code:

- ``GET  /api/whoami-v2``; ``POST /api/repos/create``; ``POST /api/validate-yaml``
- ``GET  /api/{models|datasets}/{ns}/{name}[/revision/{rev}]`` (repo info, siblings)
- ``POST /api/{t}/{r}/branch/{branch}`` (create a branch)
- ``POST /api/{t}/{r}/preupload/{rev}`` (binary files and anything over 10 MB go to LFS)
- ``POST /[datasets/]{r}.git/info/lfs/objects/batch`` and ``PUT /lfs-upload/{sha256}``
- ``POST /api/{t}/{r}/commit/{rev}[?create_pr=1]`` (NDJSON: header, file, lfsFile,
  deletedFile, deletedFolder; ``parentCommit`` checked, 412 when stale; PRs are refs/pr/N)
- ``GET  /api/{t}/{r}/tree/{rev}[/{path}]`` and ``POST /api/{t}/{r}/paths-info/{rev}``
- ``HEAD/GET /[datasets/]{r}/resolve/{rev}/{path}`` with X-Repo-Commit, ETag and Range

Tokens map to user names. Writes need the namespace owner's token; a private repo is
invisible (401 without a token, 404 with another user's) like on the real Hub. Every
request is logged (method, path, status, user: never the token) to the ``hub_server``
logger, so a failed test shows it under "Captured log", and kept in ``HubServer.requests``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

logger = logging.getLogger("hub_server")
logger.setLevel(logging.INFO)

LFS_SUFFIXES = (".parquet", ".safetensors", ".arrow", ".bin", ".pt", ".png", ".jpg", ".npz", ".zip", ".gz")
GITATTRIBUTES = b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
PREFIX = {"model": "", "dataset": "datasets/"}
PLURAL = {"models": "model", "datasets": "dataset"}


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class File:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()

    @property
    def oid(self) -> str:
        return _git_oid(self.pointer() if self.lfs else self.data)

    def entry(self, path: str, commit: Commit | None = None) -> dict:
        out = {"type": "file", "oid": self.oid, "size": len(self.data), "path": path}
        if self.lfs:
            out["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": len(self.pointer())}
        if commit is not None:
            out["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": commit.date}
        return out


@dataclass
class Commit:
    oid: str
    parent: str | None
    files: dict[str, File]
    title: str
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))


@dataclass
class Repo:
    type: str
    id: str
    private: bool
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    n_prs: int = 0

    @property
    def owner(self) -> str:
        return self.id.split("/")[0]

    def resolve(self, rev: str) -> Commit | None:
        oid = self.refs.get(rev, rev)
        return self.commits.get(oid)


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


class HubServer:
    """The Hub stand-in. ``tokens`` maps token -> user name. Use as a context manager."""

    def __init__(self, tokens: dict[str, str], host: str = "127.0.0.1", port: int = 0):
        self.tokens = dict(tokens)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.outside: list[str] = []  # hosts other than this server that the clients tried to reach
        self.lock = threading.RLock()
        self._n = 0
        handler = type("Handler", (_Handler,), {"hub": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="hub-server", daemon=True)

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def log_text(self, last: int = 200) -> str:
        return "\n".join(self.requests[-last:])

    # ------------------------------------------------------------------ state helpers
    def repo(self, rtype: str, repo_id: str, user: str | None, *, write: bool = False) -> Repo:
        repo = self.repos.get((rtype, repo_id))
        if repo is None or (repo.private and user != repo.owner):
            if user is None:
                raise HubError(401, "Repository not found (or private and you are not authenticated)", "RepoNotFound")
            raise HubError(404, "Repository not found", "RepoNotFound")
        if write and user != repo.owner:
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def commit_on(self, repo: Repo, rev: str) -> Commit:
        commit = repo.resolve(rev)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit

    def new_commit(self, repo: Repo, parent: Commit | None, files: dict[str, File], title: str) -> Commit:
        self._n += 1
        oid = hashlib.sha1(f"{repo.id}:{self._n}:{title}".encode()).hexdigest()
        commit = Commit(oid, parent.oid if parent else None, files, title)
        repo.commits[oid] = commit
        return commit

    def create_repo(self, rtype: str, repo_id: str, private: bool) -> Repo:
        repo = Repo(rtype, repo_id, private)
        self.repos[(rtype, repo_id)] = repo
        repo.refs["main"] = self.new_commit(repo, None, {".gitattributes": File(GITATTRIBUTES, False)},
                                            "initial commit").oid
        return repo


def _entries_under(commit: Commit, path: str, recursive: bool, expand: bool) -> list[dict]:
    prefix = f"{path}/" if path else ""
    files, dirs = [], set()
    for p, f in sorted(commit.files.items()):
        if not p.startswith(prefix):
            continue
        rest = p[len(prefix):].split("/")
        for depth in range(1, len(rest)):
            if depth == 1 or recursive:
                dirs.add(prefix + "/".join(rest[:depth]))
        if len(rest) == 1 or recursive:
            files.append(f.entry(p, commit if expand else None))
    folders = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
               for d in sorted(dirs)]
    return folders + files


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # the hub keeps its own log (without tokens)
        pass

    # ------------------------------------------------------------------ plumbing
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        user = self.hub.tokens.get(auth[len("Bearer "):].strip())
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, *, head: bool = False) -> None:
        self.send_response(status)
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        for k, v in hdrs.items():
            self.send_header(k, str(v))
        if "Content-Length" not in hdrs:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
        self._status = status

    def _json(self, status: int, obj: object) -> None:
        self._send(status, json.dumps(obj).encode())

    def _dispatch(self, method: str) -> None:
        self._status, user = 0, "?"
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        segs = [unquote(s) for s in url.path.strip("/").split("/")]
        body = self._body() if method in ("POST", "PUT") else b""
        try:
            user = self._user()
            with self.hub.lock:
                self._route(method, segs, query, body, user)
        except HubError as e:
            headers = {"X-Error-Code": e.code, "X-Error-Message": e.message} if e.code else {
                "X-Error-Message": e.message}
            self._send(e.status, json.dumps({"error": e.message, **e.extra}).encode(), headers,
                       head=method == "HEAD")
        except Exception as e:  # a bug in the stand-in: say so loudly
            logger.exception("hub_server crashed on %s %s", method, url.path)
            self._send(500, json.dumps({"error": f"hub_server bug: {e!r}"}).encode(), head=method == "HEAD")
        line = f"{method} {url.path}{'?' + url.query if url.query else ''} -> {self._status} (user={user})"
        self.hub.requests.append(line)
        logger.info(line)

    do_GET = lambda self: self._dispatch("GET")  # noqa: E731
    do_HEAD = lambda self: self._dispatch("HEAD")  # noqa: E731
    do_POST = lambda self: self._dispatch("POST")  # noqa: E731
    do_PUT = lambda self: self._dispatch("PUT")  # noqa: E731

    # ------------------------------------------------------------------ routes
    def _route(self, method: str, segs: list[str], query: dict, body: bytes, user: str | None) -> None:
        hub = self.hub
        if segs[:2] == ["api", "whoami-v2"] and method == "GET":
            if user is None:
                raise HubError(401, "Invalid username or password.")
            return self._json(200, {"type": "user", "name": user, "orgs": [],
                                    "auth": {"type": "access_token", "accessToken": {"role": "write"}}})
        if segs[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create(json.loads(body or b"{}"), user)
        if segs[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._json(200, {})
        if segs[0] == "lfs-upload" and method == "PUT":
            oid = segs[1]
            if hashlib.sha256(body).hexdigest() != oid:
                raise HubError(400, "uploaded content does not match its sha256 oid")
            hub.lfs[oid] = body
            return self._send(200)
        if segs[0] == "api" and len(segs) >= 4 and segs[1] in PLURAL:
            return self._api(method, PLURAL[segs[1]], f"{segs[2]}/{segs[3]}", segs[4:], query, body, user)
        # git / resolve routes: [datasets/]{ns}/{name}(.git)/...
        rtype = "dataset" if segs[0] == "datasets" else "model"
        rest = segs[1:] if rtype == "dataset" else segs
        if len(rest) >= 3 and rest[1].endswith(".git") and rest[2:] == ["info", "lfs", "objects", "batch"]:
            return self._lfs_batch(rtype, f"{rest[0]}/{rest[1][:-4]}", json.loads(body), user)
        if len(rest) >= 5 and rest[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(method, rtype, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]), user)
        raise HubError(404, f"hub_server does not implement {method} /{'/'.join(segs)}")

    def _create(self, payload: dict, user: str | None) -> None:
        if user is None:
            raise HubError(401, "You must be authenticated to create a repo.")
        ns = payload.get("organization") or user
        if ns != user:
            raise HubError(403, f"You don't have the rights to create a repo under {ns!r}")
        rtype = payload.get("type") or "model"
        repo_id = f"{ns}/{payload['name']}"
        if (rtype, repo_id) in self.hub.repos:
            raise HubError(409, "You already created this repo", url=f"{self.hub.url}/{PREFIX[rtype]}{repo_id}")
        private = payload.get("visibility", "private" if payload.get("private") else "public") == "private"
        self.hub.create_repo(rtype, repo_id, private)
        self._json(200, {"url": f"{self.hub.url}/{PREFIX[rtype]}{repo_id}", "name": repo_id})

    def _api(self, method: str, rtype: str, repo_id: str, rest: list[str], query: dict, body: bytes,
             user: str | None) -> None:
        hub = self.hub
        if method == "GET" and (not rest or rest[0] == "revision"):
            repo = hub.repo(rtype, repo_id, user)
            commit = hub.commit_on(repo, "/".join(rest[1:]) if rest else "main")
            siblings = [{"rfilename": p, "size": len(f.data), "blobId": f.oid,
                         **({"lfs": {"sha256": f.sha256, "size": len(f.data), "pointerSize": len(f.pointer())}}
                            if f.lfs else {})} for p, f in sorted(commit.files.items())]
            return self._json(200, {"id": repo_id, "author": repo.owner, "private": repo.private, "sha": commit.oid,
                                    "lastModified": commit.date, "createdAt": commit.date, "disabled": False,
                                    "gated": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings})
        if method == "POST" and rest[:1] == ["branch"]:
            repo = hub.repo(rtype, repo_id, user, write=True)
            branch = "/".join(rest[1:])
            if branch in repo.refs:
                raise HubError(409, f"Reference {branch} already exists")
            start = (json.loads(body) if body else {}).get("startingPoint") or "main"
            repo.refs[branch] = hub.commit_on(repo, start).oid
            return self._json(200, {})
        if method == "POST" and rest[:1] == ["preupload"]:
            repo = hub.repo(rtype, repo_id, user, write=True)
            files = json.loads(body)["files"]
            out = []
            for f in files:
                sample = base64.b64decode(f["sample"])
                lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] > 10_000_000 or b"\0" in sample
                out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False})
            return self._json(200, {"files": out, "commitOid": hub.commit_on(repo, rest[1]).oid
                                    if rest[1] in repo.refs else None})
        if method == "POST" and rest[:1] == ["commit"]:
            return self._commit(rtype, repo_id, "/".join(rest[1:]), query, body, user)
        if method == "GET" and rest[:1] == ["tree"]:
            repo = hub.repo(rtype, repo_id, user)
            commit = hub.commit_on(repo, rest[1])
            path = "/".join(rest[2:]).strip("/")
            entries = _entries_under(commit, path, query.get("recursive", "").lower() in ("1", "true"),
                                     query.get("expand", "").lower() in ("1", "true"))
            if path and not entries:
                raise HubError(404, f"{path} does not exist on {rest[1]}", "EntryNotFound")
            return self._json(200, entries)
        if method == "POST" and rest[:1] == ["paths-info"]:
            repo = hub.repo(rtype, repo_id, user)
            commit = hub.commit_on(repo, rest[1])
            form = parse_qs(body.decode())
            expand = form.get("expand", ["False"])[-1].lower() in ("1", "true")
            out = []
            for p in form.get("paths", []):
                p = p.strip("/")
                if p in commit.files:
                    out.append(commit.files[p].entry(p, commit if expand else None))
                elif any(q.startswith(p + "/") for q in commit.files):
                    out.append({"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0,
                                "path": p})
            return self._json(200, out)
        raise HubError(404, f"hub_server does not implement {method} /api/{rtype}s/{repo_id}/{'/'.join(rest)}")

    def _commit(self, rtype: str, repo_id: str, rev: str, query: dict, body: bytes, user: str | None) -> None:
        hub = self.hub
        repo = hub.repo(rtype, repo_id, user, write=True)
        base = hub.commit_on(repo, rev)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = lines[0]["value"] if lines and lines[0]["key"] == "header" else {}
        if header.get("parentCommit") and header["parentCommit"] != base.oid:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(base.files)
        for item in lines[1:]:
            key, v = item["key"], item["value"]
            if key == "file":
                files[v["path"]] = File(base64.b64decode(v["content"]), False)
            elif key == "lfsFile":
                if v["oid"] not in hub.lfs:
                    raise HubError(422, f"LFS object {v['oid']} of {v['path']} was never uploaded")
                files[v["path"]] = File(hub.lfs[v["oid"]], True)
            elif key == "deletedFile":
                if files.pop(v["path"], None) is None:
                    raise HubError(404, f"{v['path']} does not exist", "EntryNotFound")
            elif key == "deletedFolder":
                for p in [p for p in files if p.startswith(v["path"].rstrip("/") + "/")]:
                    del files[p]
            else:
                raise HubError(400, f"unknown commit operation {key!r}")
        commit = hub.new_commit(repo, base, files, header.get("summary", ""))
        url = f"{hub.url}/{PREFIX[rtype]}{repo_id}"
        pr_url = None
        if query.get("create_pr") in ("1", "true", "True"):
            repo.n_prs += 1
            repo.refs[f"refs/pr/{repo.n_prs}"] = commit.oid
            pr_url = f"{url}/discussions/{repo.n_prs}"
        else:
            if rev not in repo.refs:
                raise HubError(400, f"cannot commit to {rev!r}: not a branch")
            repo.refs[rev] = commit.oid
        self._json(200, {"commitUrl": f"{url}/commit/{commit.oid}", "commitOid": commit.oid,
                         "pullRequestUrl": pr_url, "success": True})

    def _lfs_batch(self, rtype: str, repo_id: str, payload: dict, user: str | None) -> None:
        self.hub.repo(rtype, repo_id, user, write=True)
        objects = []
        for obj in payload.get("objects", []):
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.hub.lfs:
                entry["actions"] = {"upload": {"href": f"{self.hub.url}/lfs-upload/{obj['oid']}", "header": {}}}
            objects.append(entry)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                   {"Content-Type": "application/vnd.git-lfs+json"})

    def _resolve(self, method: str, rtype: str, repo_id: str, rev: str, path: str, user: str | None) -> None:
        repo = self.hub.repo(rtype, repo_id, user)
        commit = self.hub.commit_on(repo, rev)
        f = commit.files.get(path)
        if f is None:
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound")
        etag = f'"{f.sha256 if f.lfs else f.oid}"'
        headers = {"X-Repo-Commit": commit.oid, "ETag": etag, "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if f.lfs:
            headers.update({"X-Linked-Etag": etag, "X-Linked-Size": len(f.data)})
        data, status = f.data, 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start_s, _, end_s = rng[len("bytes="):].partition("-")
            n = len(data)
            if start_s == "":
                start, end = max(n - int(end_s), 0), n - 1
            else:
                start, end = int(start_s), min(int(end_s), n - 1) if end_s else n - 1
            if start >= n and n > 0:
                raise HubError(416, "Range Not Satisfiable")
            headers["Content-Range"] = f"bytes {start}-{end}/{n}"
            data, status = data[start:end + 1], 206
        headers["Content-Length"] = len(data)
        self._send(status, data, headers, head=method == "HEAD")


__all__ = ["HubServer"]


@contextlib.contextmanager
def hub_environment(server: HubServer, token: str, home: str | os.PathLike) -> Iterator[None]:
    """Point huggingface_hub and datasets at ``server`` with ``token``; restore everything after.

    Name lookups of any host but 127.0.0.1 fail while it is active, and are listed in
    ``server.outside``.

    Both libraries read ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and the cache paths into module
    constants at import, which in a test session happened long before this runs, so the
    constants are patched as well as the environment.
    """
    import datasets.config as dconfig
    from huggingface_hub import HfFileSystem
    from huggingface_hub import constants as hconstants

    home = str(home)
    env = {"HF_ENDPOINT": server.url, "HF_TOKEN": token, "HF_HOME": home, "HF_HUB_DISABLE_XET": "1",
           "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
           "HF_HUB_DISABLE_TELEMETRY": "1"}
    hub_cache = os.path.join(home, "hub")
    patches = [
        (hconstants, "ENDPOINT", server.url),
        (hconstants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}"),
        (hconstants, "HF_HUB_DISABLE_XET", True),
        (hconstants, "HF_HUB_OFFLINE", False),
        (hconstants, "HF_HUB_DISABLE_TELEMETRY", True),
        (hconstants, "HF_HOME", home),
        (hconstants, "HF_HUB_CACHE", hub_cache),
        (hconstants, "HF_ASSETS_CACHE", os.path.join(home, "assets")),
        (hconstants, "HF_XET_CACHE", os.path.join(home, "xet")),
        (hconstants, "HF_TOKEN_PATH", os.path.join(home, "token")),
        (hconstants, "HF_STORED_TOKENS_PATH", os.path.join(home, "stored_tokens")),
        (dconfig, "HF_ENDPOINT", server.url),
        (dconfig, "HUB_DATASETS_URL", server.url + "/datasets/{repo_id}/resolve/{revision}/{path}"),
        (dconfig, "HF_HUB_OFFLINE", False),
        (dconfig, "HF_DATASETS_OFFLINE", False),
        (dconfig, "HF_UPDATE_DOWNLOAD_COUNTS", False),  # it would HEAD an S3 bucket outside the stand-in
        (dconfig, "HF_CACHE_HOME", home),
        (dconfig, "HF_DATASETS_CACHE", Path(home, "datasets")),
        (dconfig, "DOWNLOADED_DATASETS_PATH", Path(home, "datasets", "downloads")),
        (dconfig, "EXTRACTED_DATASETS_PATH", Path(home, "datasets", "downloads", "extracted")),
    ]
    real_getaddrinfo = socket.getaddrinfo

    def local_only(host, *args, **kwargs):  # nothing may leave the machine, least of all to huggingface.co
        if str(host) not in ("127.0.0.1", "localhost"):
            if not str(host).endswith(".127.0.0.1"):  # datasets probes datasets-server.<endpoint host>
                server.outside.append(str(host))
            server.requests.append(f"BLOCKED name lookup of {host}")
            raise OSError(f"hub_environment: blocked a connection to {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    patches.append((socket, "getaddrinfo", local_only))
    saved_env = {k: os.environ.get(k) for k in env}
    saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches]
    os.environ.update(env)
    for mod, name, value in patches:
        setattr(mod, name, value)
    HfFileSystem.clear_instance_cache()
    try:
        yield
    finally:
        HfFileSystem.clear_instance_cache()
        for mod, name, value in saved:
            setattr(mod, name, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
