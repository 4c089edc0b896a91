"""`cnnzoo export | serve`: a trained model out of cnnzoo, as an ONNX file, and behind a web page
and a JSON API (the Happy House door)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import typer
from rich.console import Console

from cnnzoo.cli import add_commands
from cnnzoo.cli.args import megapixels, parse_shape, positive
from cnnzoo.errors import UserError

console = Console(highlight=False)
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def export(
    source: str = typer.Argument(..., help="A run folder, a .keras/.h5 file, or a registered model name (untrained).",
                                 metavar="RUN_OR_MODEL"),
    output: Path = typer.Option(..., "-o", "--output", help="The ONNX file to write, e.g. model.onnx."),
    input_shape: str = typer.Option(None, "--input-shape", help="A model name's input, e.g. 64,64,3 (default: its own)."),
    classes: int = typer.Option(None, "--classes", help="A model name's number of classes (default: its own)."),
    arch: str = typer.Option(None, help="Architecture of a weights-only file."),
    unsafe: bool = typer.Option(False, "--unsafe", help="Allow model files that can run code (Lambda layers)."),
) -> None:
    """Write RUN_OR_MODEL as an ONNX file for onnxruntime: uint8 pixels in, probabilities out."""
    from cnnzoo.inference.export import export as export_onnx

    result = export_onnx(source, output, unsafe=unsafe, arch=arch, input_shape=parse_shape(input_shape),
                         classes=classes)
    names = result["class_names"]
    shown = ", ".join(names[:6]) + (f", ... ({len(names)})" if len(names) > 6 else "")
    console.print(f"wrote {result['path']}: uint8 pixels {'x'.join(map(str, result['input'][1:]))} in, "
                  f"probabilities of {shown} out; onnxruntime agrees with Keras to {result['max_difference']:.1e} "
                  f"({result['seconds']:.1f} s)", soft_wrap=True)


def serve(
    model_file: Path = typer.Argument(..., help="A .keras/.h5/.onnx file or a run folder (e.g. runs/happy-smiles-s0)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, help="TCP port."),
    threshold: float = typer.Option(0.5, help="p(class 1) from which a sigmoid model opens the door."),
    max_mb: float = typer.Option(10.0, "--max-mb", help="Largest request body, in MB."),
    max_megapixels: float = typer.Option(40.0, "--max-megapixels", help="Largest image, in millions of pixels."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn's: info logs every request, warning only problems."),
    unsafe: bool = typer.Option(False, "--unsafe", help="Allow model files that can run code (Lambda layers)."),
    threads: int = typer.Option(None, "--threads", help="Threads of the forward pass (default: half the cores)."),
    faces: str = typer.Option("auto", "--faces", help="Find the faces and decide over them: auto (when the model "
                              "was trained on face crops), on or off."),
    ssl_certfile: Path = typer.Option(None, "--ssl-certfile", help="Serve HTTPS (browsers allow the camera only on https or localhost)."),
    ssl_keyfile: Path = typer.Option(None, "--ssl-keyfile", help="Private key of --ssl-certfile."),
) -> None:
    """Serve MODEL_FILE: a page at / (webcam or file -> open or closed door) and POST /predict."""
    try:
        import uvicorn

        from cnnzoo._io import resolve_model_path
        from cnnzoo.inference.faces import mode_arg
        from cnnzoo.serve.app import create_app
        from cnnzoo.serve.model import check_threshold
    except ImportError as error:
        raise UserError(f"cnnzoo serve needs FastAPI and uvicorn ({error.name} is missing): "
                        "install them with pip install 'cnnzoo[serve]'.") from None
    if not 0 < port < 65536:
        raise UserError(f"The port must be between 1 and 65535. Received: --port {port}")
    if log_level not in LOG_LEVELS:
        raise UserError(f"Unknown log level {log_level!r}: use one of {', '.join(LOG_LEVELS)}.")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1. Received: --threads {threads}")
    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise UserError("HTTPS needs both --ssl-certfile and --ssl-keyfile.")
    if ssl_certfile:
        _check_certificate(ssl_certfile, ssl_keyfile)
    max_bytes = max(1, round(positive(max_mb, "--max-mb") * 1024 * 1024))
    max_pixels = megapixels(max_megapixels)
    check_threshold(threshold)
    faces = mode_arg(faces)
    resolve_model_path(model_file)  # cheap checks first, then the port, then the slow load
    sock = _listen(host, port)  # before loading the model: a busy port fails fast
    app = create_app(model_file, unsafe=unsafe, threshold=threshold, max_bytes=max_bytes, max_pixels=max_pixels,
                     threads=threads, faces=faces)
    served = app.state.served
    scheme = "https" if ssl_certfile else "http"
    shown = f"[{host}]" if ":" in host else host
    console.print(f"Serving {served.name} ({served.architecture}, classes: {', '.join(served.class_names)}) "
                  f"at {scheme}://{shown}:{port}/  (API: /predict, /model, /health, /openapi.json; Ctrl+C stops)",
                  soft_wrap=True)
    # server_header=False: no "server: uvicorn" banner telling a visitor what to attack.
    config = uvicorn.Config(app, log_level=log_level, ssl_certfile=ssl_certfile and str(ssl_certfile),
                            ssl_keyfile=ssl_keyfile and str(ssl_keyfile), server_header=False)
    uvicorn.Server(config).run(sockets=[sock])


def _check_certificate(certfile: Path, keyfile: Path) -> None:
    """Load the pair as uvicorn will, so a missing or wrong file is one sentence now, not a
    traceback once the server starts."""
    for option, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if not path.is_file():
            raise UserError(f"{option} {path} is not a file: give the certificate and its private key as PEM files.")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as error:
        raise UserError(f"The certificate {certfile} and key {keyfile} cannot be used for HTTPS ({error}): give a "
                        "PEM certificate and the private key that belongs to it.") from None


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # sockets that say they are TCP, and the connections accepted here inherit it. With Nagle on,
    # each answer (headers, then body) waited for the client's delayed ACK: ~40 ms a request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise UserError(f"Cannot listen on {host}:{port} ({error.strerror or error}): choose another "
                        "--port or --host.") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def register(app: typer.Typer) -> None:
    add_commands(app, export, serve)
