"""A small, bounded load generator for `cnnzoo serve` (loopback only): many concurrent
requests, good and bad images mixed, every answer checked, latency percentiles.

Used by benchmarks/serve_load.py and the tests (tests/test_serve_load.py). Needs httpx (test extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SMILES_MEMBERS = "SMILEsmileD-master/SMILEs/{0}/{0}7/"


@dataclass(frozen=True)
class Case:
    """One request to send and what must come back."""

    kind: str  # "good", or which bad input it is
    body: bytes
    content_type: str | None  # None: a multipart upload in the field `file`
    status: int = 200
    probabilities: tuple[tuple[float, ...], ...] | None = None  # for good images: the reference (answer_probabilities)


def answer_probabilities(answer: dict) -> tuple[tuple[float, ...], ...]:
    """The probability vectors of an answer (`cnnzoo predict`'s or the server's JSON): one per face
    found where the model judges faces (none when no face was found), else the image's one."""
    if "faces" in answer:
        return tuple(tuple(face["probabilities"]) for face in answer["faces"])
    return (tuple(answer["probabilities"]),)


@dataclass
class Outcome:
    case: Case
    status: int | None
    latency_s: float
    problem: str | None = None  # why the answer is wrong, or None


@dataclass
class LoadResult:
    outcomes: list[Outcome]
    wall_s: float
    concurrency: int
    problems: list[str] = field(default_factory=list)

    @property
    def requests_per_s(self) -> float:
        return len(self.outcomes) / self.wall_s

    def latency_ms(self, q: float, kind: str | None = None) -> float:
        values = sorted(o.latency_s for o in self.outcomes if kind is None or (o.case.kind == "good") == (kind == "good"))
        return 1000 * percentile(values, q)

    def counts(self) -> dict[int | None, int]:
        out: dict[int | None, int] = {}
        for o in self.outcomes:
            out[o.status] = out.get(o.status, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, int(np.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def smiles_faces(archive: Path, per_class: int) -> list[tuple[str, bytes]]:
    """(name, JPEG bytes) of real faces from the smiles archive: smiling ones, then not."""
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        faces = []
        for folder in ("positives", "negatives"):
            prefix = SMILES_MEMBERS.format(folder)
            chosen = sorted(n for n in names if n.startswith(prefix) and n.endswith(".jpg"))[:per_class]
            faces += [(f"{folder}-{Path(n).name}", zf.read(n)) for n in chosen]
    return faces


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def bad_cases(good_jpeg: bytes, max_bytes: int) -> list[Case]:
    """One of each kind of bad request, with the status the server must answer."""
    import struct
    import zlib

    def header_png(w, h):  # a PNG header claiming w x h, cut off where its pixels begin
        ihdr = b"IHDR" + struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
                + struct.pack(">I", 4096) + b"IDAT" + zlib.compress(b"\0" * 64)[:8])

    return [
        Case("not an image", b"not a picture, just text\n" * 40, "image/jpeg", 422),
        Case("not an image (multipart)", b"%PDF-1.4 fake document", None, 422),
        Case("truncated", good_jpeg[: len(good_jpeg) // 2], "image/jpeg", 422),
        Case("truncated (multipart)", good_jpeg[: len(good_jpeg) // 3], None, 422),
        Case("empty", b"", "image/jpeg", 400),
        Case("wrong content type", good_jpeg, "text/plain", 415),
        Case("wrong content type (json)", b'{"image": "face.jpg"}', "application/json", 415),
        Case("too many pixels", header_png(20_000, 20_000), "image/png", 413),
        Case("body too large", b"\xff\xd8" + b"\0" * max_bytes, "image/jpeg", 413),
    ]


def mixed_cases(good: list[Case], bad: list[Case], n: int, bad_share: float, seed: int = 0) -> list[Case]:
    """`n` requests, about `bad_share` of them bad, shuffled reproducibly."""
    rng = random.Random(seed)
    n_bad = round(n * bad_share)
    cases = [good[i % len(good)] for i in range(n - n_bad)] + [bad[i % len(bad)] for i in range(n_bad)]
    rng.shuffle(cases)
    return cases


async def _send(client, case: Case) -> Outcome:
    import httpx

    started = time.perf_counter()
    try:
        if case.content_type is None:
            response = await client.post("/predict", files={"file": ("upload", case.body, "application/octet-stream")})
        else:
            response = await client.post("/predict", content=case.body, headers={"content-type": case.content_type})
    except httpx.HTTPError as error:
        return Outcome(case, None, time.perf_counter() - started, f"{case.kind}: {type(error).__name__} {error}")
    latency = time.perf_counter() - started
    problem = None
    if response.status_code != case.status:
        problem = f"{case.kind}: HTTP {response.status_code}, expected {case.status}: {response.text[:200]}"
    elif case.status == 200:
        got = answer_probabilities(response.json())
        if case.probabilities is not None and (np.shape(got) != np.shape(case.probabilities)
                                               or not np.allclose(got, case.probabilities, atol=1e-5)):
            problem = f"{case.kind}: probabilities {got}, expected {case.probabilities}"
    else:
        body = response.json()
        if not (isinstance(body.get("error"), str) and body.get("status") == case.status):
            problem = f"{case.kind}: the error body is {body}"
    return Outcome(case, response.status_code, latency, problem)


async def _run(base_url: str, cases: list[Case], concurrency: int, timeout_s: float) -> LoadResult:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout_s) as client:

        async def bounded(case):
            async with gate:
                return await _send(client, case)

        started = time.perf_counter()
        outcomes = await asyncio.gather(*(bounded(c) for c in cases))
        wall = time.perf_counter() - started
    return LoadResult(list(outcomes), wall, concurrency, [o.problem for o in outcomes if o.problem])


def run_load(base_url: str, cases: list[Case], *, concurrency: int = 32, timeout_s: float = 60.0) -> LoadResult:
    """Send every case with at most `concurrency` in flight; check each answer."""
    return asyncio.run(_run(base_url, cases, concurrency, timeout_s))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen
    log: object  # the file its stdout and stderr go to (a pipe nobody reads would stall it)
    final: str | None = None  # the whole output, once the server has stopped
    ready_s: float = float("nan")  # from starting the process to its first /health answer

    def memory_mib(self) -> tuple[float, float]:
        """(resident, peak resident) memory of the server process in MiB (Linux /proc)."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text().splitlines()
        except OSError:
            return float("nan"), float("nan")
        fields = {line.split(":")[0]: line.split()[1] for line in status if line.startswith(("VmRSS", "VmHWM"))}
        return float(fields.get("VmRSS", "nan")) / 1024, float(fields.get("VmHWM", "nan")) / 1024

    def output(self) -> str:
        """What the server printed so far (all of it, after the `with` block)."""
        if self.final is not None:
            return self.final
        self.log.flush()
        self.log.seek(0)
        return self.log.read()


@contextlib.contextmanager
def _sigint_not_ignored():
    """Ctrl+C in the server acts as in a terminal. A shell runs a background job (`cmd &` in a
    script) with SIGINT ignored, and a child inherits that: uvicorn then re-raised the SIGINT it
    had handled into the ignored state, and the server exited 0. A handler, unlike "ignored", is
    reset to the default when the child starts (no preexec_fn: it would fork a threaded process)."""
    ignored = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def serve_subprocess(model, *, port: int | None = None, extra_args=(), start_timeout_s: float = 180.0, env=None):
    """`python -m cnnzoo serve MODEL` on 127.0.0.1 in its own process; yields a ServerProcess.

    The server is stopped with SIGINT (as Ctrl+C would) and killed if it does not exit.
    """
    import httpx

    port = port or free_port()
    command = [sys.executable, "-m", "cnnzoo", "serve", str(model), "--host", "127.0.0.1", "--port", str(port),
               *map(str, extra_args)]
    with tempfile.TemporaryFile("w+", encoding="utf-8") as log:
        started = time.perf_counter()
        with _sigint_not_ignored():
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True,
                                       env={**os.environ, **(env or {})})
        server = ServerProcess(f"http://127.0.0.1:{port}", process, log)
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"cnnzoo serve exited with {process.returncode}: {server.output()}")
                try:
                    if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                        server.ready_s = time.perf_counter() - started
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cnnzoo serve did not answer /health within {start_timeout_s:.0f} s")
                time.sleep(0.02)
            yield server
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
            server.final = server.output()


def describe(result: LoadResult) -> str:
    counts = ", ".join(f"{k}: {v}" for k, v in result.counts().items())
    return (f"{len(result.outcomes)} requests at concurrency {result.concurrency} in {result.wall_s:.2f} s: "
            f"{result.requests_per_s:.1f} req/s, p50 {result.latency_ms(50):.1f} ms, "
            f"p99 {result.latency_ms(99):.1f} ms; statuses {counts}; problems: {len(result.problems)}")
