"""`ecgtl data download` against a fake PhysioNet mirror on 127.0.0.1 (checksums, corruption, interruption)."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ecgtl.data.download import download, parse_checksums
from ecgtl.errors import EcgtlError

pytestmark = pytest.mark.network

RELEASE = "challenge-2021/1.0.3"
FILES = {
    "training/georgia/g1/E00001.hea": b"E00001 12 500 5000\n" * 3,
    "training/georgia/g1/E00001.mat": bytes(range(256)) * 40,
    "training/georgia/g1/E00002.mat": b"\x01\x02" * 3000,
    "training/cpsc_2018/g1/A0001.mat": b"not georgia",
}


class FakeMirror(BaseHTTPRequestHandler):
    """Serves FILES with Range support; can corrupt or cut a file for its first N requests."""

    files: dict[str, bytes] = {}
    extra_sums: list[str] = []  # hostile lines appended to SHA256SUMS.txt
    corrupt_first: dict[str, int] = {}
    cut_first: dict[str, int] = {}
    requests: list[str] = []

    def log_message(self, *args):
        pass

    def _body(self):
        release = next((r for r in (RELEASE, "ptb-xl/1.0.3") if self.path.startswith(f"/{r}/")), None)
        if release is None:
            return None
        relative = self.path[len(release) + 2:]
        if relative == "SHA256SUMS.txt":
            lines = [f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in self.files.items()]
            return "".join(lines + [f"{line}\n" for line in self.extra_sums]).encode()
        return self.files.get(relative, b"served for any path: " + relative.encode())

    def do_HEAD(self):
        body = self._body()
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self):
        body = self._body()
        if body is None:
            self.send_error(404)
            return
        relative = self.path.split("/", 3)[-1]
        type(self).requests.append(relative)
        if self.corrupt_first.get(relative, 0) > 0:
            self.corrupt_first[relative] -= 1
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
        start, end = 0, len(body) - 1
        header = self.headers.get("Range")
        if header:
            first, _, last = header.removeprefix("bytes=").partition("-")
            start, end = int(first), int(last) if last else len(body) - 1
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:end + 1]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if self.cut_first.get(relative, 0) > 0:
            self.cut_first[relative] -= 1
            self.wfile.write(chunk[: len(chunk) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(chunk)


@pytest.fixture
def mirror():
    FakeMirror.files = dict(FILES)
    FakeMirror.extra_sums = []
    FakeMirror.corrupt_first, FakeMirror.cut_first, FakeMirror.requests = {}, {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeMirror)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_parse_checksums_filters_prefix():
    text = "ab  training/georgia/x.hea\ncd *training/cpsc/y.hea\n\n"
    assert parse_checksums(text, "training/georgia/") == {"training/georgia/x.hea": "ab"}


def test_download_verifies_and_skips_other_sources(mirror, tmp_path):
    report = download("g12ec", tmp_path, mirror=mirror, progress=False)
    assert report.files == 3 and report.fetched == 3 and not report.failed
    for name in ("training/georgia/g1/E00001.hea", "training/georgia/g1/E00001.mat", "training/georgia/g1/E00002.mat"):
        assert (tmp_path / name).read_bytes() == FILES[name]
    assert not (tmp_path / "training/cpsc_2018").exists()
    # A second run resumes from the ledger: nothing is fetched again.
    FakeMirror.requests.clear()
    again = download("g12ec", tmp_path, mirror=mirror, progress=False)
    assert again.already_verified == 3 and again.fetched == 0
    assert [r for r in FakeMirror.requests if r != "SHA256SUMS.txt"] == []


def test_corrupted_file_is_reported_and_refetched(mirror, tmp_path):
    FakeMirror.corrupt_first["training/georgia/g1/E00001.mat"] = 1
    report = download("g12ec", tmp_path, mirror=mirror, progress=False)
    assert report.refetched == ["training/georgia/g1/E00001.mat"] and not report.failed
    assert (tmp_path / "training/georgia/g1/E00001.mat").read_bytes() == FILES["training/georgia/g1/E00001.mat"]


def test_persistently_corrupt_file_fails_and_is_not_kept(mirror, tmp_path):
    FakeMirror.corrupt_first["training/georgia/g1/E00002.mat"] = 99
    report = download("g12ec", tmp_path, mirror=mirror, progress=False)
    assert report.failed == ["training/georgia/g1/E00002.mat"]
    assert not (tmp_path / "training/georgia/g1/E00002.mat").exists()


def test_interrupted_transfer_and_partial_file_resume(mirror, tmp_path):
    FakeMirror.cut_first["training/georgia/g1/E00001.mat"] = 1
    partial = tmp_path / "training/georgia/g1/E00002.mat"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(FILES["training/georgia/g1/E00002.mat"][:1000])  # left by an earlier killed run
    report = download("g12ec", tmp_path, mirror=mirror, progress=False)
    assert not report.failed
    for name in ("training/georgia/g1/E00001.mat", "training/georgia/g1/E00002.mat"):
        assert (tmp_path / name).read_bytes() == FILES[name]


def test_unreachable_mirror_is_one_clear_error(tmp_path):
    with pytest.raises(EcgtlError, match="cannot fetch checksum list"):
        download("ptbxl", tmp_path, mirror="http://127.0.0.1:9/", progress=False)


def _tree(folder):
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() and not p.is_symlink() else "dir/link")
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize(
    ("release", "line"),
    [
        ("g12ec", "training/georgia/../../../outside/victim.txt"),
        ("g12ec", "training/georgia/g1/../../../../outside/victim.txt"),
        ("ptbxl", "{outside}/victim.txt"),
        ("ptbxl", "./../outside/victim.txt"),
        ("g12ec", "training/georgia/escape/victim.txt"),  # escape is a symlink to ../outside
        ("ptbxl", ".ecgtl-download.json"),
    ],
)
def test_checksum_lines_leaving_the_target_are_refused_and_nothing_outside_changes(mirror, tmp_path, release, line):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_bytes(b"precious user data")
    (outside / "other.bin").write_bytes(bytes(range(256)))
    target = tmp_path / "target"
    (target / "training" / "georgia").mkdir(parents=True)
    (target / "training" / "georgia" / "escape").symlink_to(outside, target_is_directory=True)
    line = line.format(outside=outside)
    # A wrong digest: the old code fetched the file, found a mismatch and deleted it, outside the target.
    FakeMirror.extra_sums = [f"{'0' * 64}  {line}"]
    before_outside, before_target = _tree(outside), _tree(target)
    with pytest.raises(EcgtlError) as info:
        download(release, target, mirror=mirror, progress=False)
    message = str(info.value)
    assert repr(line.removeprefix("./")) in message and "SHA256SUMS.txt" in message and "\n" not in message
    assert _tree(outside) == before_outside
    assert _tree(target) == before_target  # nothing fetched, nothing written, not even the ledger
    assert [r for r in FakeMirror.requests if not r.endswith("SHA256SUMS.txt")] == []


def test_a_name_longer_than_the_file_system_allows_is_refused_before_any_file(mirror, tmp_path):
    """It used to pass validation and end in an OSError traceback after other files had been written."""
    FakeMirror.extra_sums = [f"{'0' * 64}  training/georgia/g1/{'E' * 300}.mat"]
    with pytest.raises(EcgtlError, match="has a name longer than the file system allows"):
        download("g12ec", tmp_path / "target", mirror=mirror, progress=False)
    assert not (tmp_path / "target").exists() or not any((tmp_path / "target").rglob("*.mat"))


@pytest.mark.parametrize("ledger", ["[]", '{"training/georgia/g1/E00001.hea": "yes"}', "null", "{"])
def test_a_malformed_ledger_means_every_file_is_verified_again(mirror, tmp_path, ledger):
    target = tmp_path / "target"
    download("g12ec", target, mirror=mirror, progress=False)
    (target / ".ecgtl-download.json").write_text(ledger)
    report = download("g12ec", target, mirror=mirror, progress=False)  # a TypeError on `[]` before
    assert not report.failed and (target / "training/georgia/g1/E00001.mat").read_bytes() == FILES[
        "training/georgia/g1/E00001.mat"]
