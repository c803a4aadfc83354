"""A local stand-in for the Hugging Face Hub's download API: the endpoints that
``huggingface_hub``'s ``hf_hub_download`` and ``snapshot_download`` call, serving folders as
repositories with branches and commits. Tests point ``HF_ENDPOINT`` at it, so the library's
real resolution, cache and offline code runs; nothing leaves the machine."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}  # repo -> {"refs": {branch: sha}, "commits": {sha: {path: bytes}}}
        self.requests: list[str] = []

    def publish(self, repo: str, folder: Path, branch: str = "main") -> str:
        """Commit every file under ``folder`` to ``repo`` on ``branch``; the commit's sha."""
        files = {
            p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
        }
        listing = hashlib.sha1()
        for path, data in files.items():
            listing.update(path.encode() + hashlib.sha256(data).digest())
        sha = listing.hexdigest()
        entry = self.repos.setdefault(repo, {"refs": {}, "commits": {}})
        entry["commits"][sha], entry["refs"][branch] = files, sha
        return sha

    def serve(self) -> tuple[str, ThreadingHTTPServer]:
        """Start serving on a free local port -> (endpoint URL, server to shut down)."""
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                self.answer(body=False)

            def do_GET(self) -> None:
                self.answer(body=True)

            def answer(self, body: bool) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                status, headers, data = hub.route(unquote(urlparse(self.path).path))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}", server

    def route(self, path: str) -> tuple[int, dict, bytes]:
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            answer = self.revision_info if parts[4] == "revision" else self.tree
            return answer("/".join(parts[2:4]), "/".join(parts[5:]))
        if len(parts) >= 5 and parts[2] == "resolve":
            return self.file("/".join(parts[:2]), parts[3], "/".join(parts[4:]))
        return 404, {"X-Error-Code": "EntryNotFound"}, b"not found"

    def commit(self, repo: str, revision: str) -> tuple[str | None, int, dict]:
        if repo not in self.repos:
            return None, 401, {"X-Error-Code": "RepoNotFound"}
        entry = self.repos[repo]
        sha = entry["refs"].get(revision, revision if revision in entry["commits"] else None)
        if sha is None:
            return None, 404, {"X-Error-Code": "RevisionNotFound"}
        return sha, 200, {}

    def revision_info(self, repo: str, revision: str) -> tuple[int, dict, bytes]:
        sha, status, headers = self.commit(repo, revision)
        if sha is None:
            return status, headers, b"{}"
        files = self.repos[repo]["commits"][sha]
        info = {"id": repo, "sha": sha, "siblings": [{"rfilename": p} for p in files]}
        return 200, {"Content-Type": "application/json"}, json.dumps(info).encode()

    def tree(self, repo: str, revision: str) -> tuple[int, dict, bytes]:
        """Every file of a revision (recursive listing, one page)."""
        sha, status, headers = self.commit(repo, revision)
        if sha is None:
            return status, headers, b"[]"
        files = self.repos[repo]["commits"][sha]
        entries = [
            {"type": "file", "path": p, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
            for p, d in files.items()
        ]
        return 200, {"Content-Type": "application/json"}, json.dumps(entries).encode()

    def file(self, repo: str, revision: str, path: str) -> tuple[int, dict, bytes]:
        sha, status, headers = self.commit(repo, revision)
        if sha is None:
            return status, headers, b""
        data = self.repos[repo]["commits"][sha].get(path)
        if data is None:
            return 404, {"X-Error-Code": "EntryNotFound"}, b""
        etag = f'"{hashlib.sha256(data).hexdigest()}"'
        return 200, {"X-Repo-Commit": sha, "ETag": etag}, data
