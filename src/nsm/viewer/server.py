"""Rerun's viewer and server as processes of their own (the `rerun` executable its package
ships): the native viewer on files, or the web viewer served over HTTP with recordings
streamed from a gRPC server, bound to localhost unless told otherwise. Used by
`nsm dataset view`, `nsm demo --view` and view_node; a process of its own keeps its work off
the robot's interpreter.
"""
import socket
import subprocess
import time
from pathlib import Path

from nsm.errors import NsmError

WEB_PORT = 9090  # Rerun's defaults: web viewer over HTTP, recordings over gRPC
GRPC_PORT = 9876
MEMORY_LIMIT = "512MiB"  # what a live server buffers for viewers that connect late (oldest dropped first)


def viewer_command(rrds: list[Path], web: bool, host: str = "127.0.0.1", web_port: int = WEB_PORT,
                   grpc_port: int = GRPC_PORT) -> list[str]:
    """Rerun's own viewer (the `rerun` executable its package installs) on the files: native,
    or the web viewer served over HTTP on host:web_port (recordings from a gRPC server on grpc_port)."""
    import rerun_cli  # the package that ships the viewer binary (its `rerun` script wraps it in a subprocess)

    command = [str(Path(rerun_cli.__file__).parent / "rerun")]
    if web:
        command += ["--serve-web", "--bind", host, "--web-viewer-port", str(web_port), "--port", str(grpc_port)]
    return command + [str(p) for p in rrds]


def web_url(host: str = "127.0.0.1", web_port: int = WEB_PORT, grpc_port: int = GRPC_PORT) -> str:
    return f"http://{host}:{web_port}/?url={grpc_url(host, grpc_port).replace('+', '%2B')}"


def serve_live(web_port: int = WEB_PORT, grpc_port: int = GRPC_PORT, host: str = "127.0.0.1",
               timeout: float = 30.0) -> subprocess.Popen:
    """Rerun's server for a live stream (no files): the web viewer on host:web_port, the stream
    in on grpc_port (buffered up to MEMORY_LIMIT for viewers that connect late)."""
    server = subprocess.Popen([*viewer_command([], True, host, web_port, grpc_port), "--server-memory-limit", MEMORY_LIMIT],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, grpc_port), timeout=1).close()
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise NsmError(f"Rerun's server did not start on {host}:{grpc_port}: is the port taken? Choose another "
                               "one (the view's gRPC port)") from None
            time.sleep(0.1)


def grpc_url(host: str = "127.0.0.1", grpc_port: int = GRPC_PORT) -> str:
    return f"rerun+http://{host}:{grpc_port}/proxy"
