"""`gpt2lab serve`: the web app on a local port. ``add_serve_parser`` adds the command to the
``gpt2lab`` parser; the app itself is ``gpt2lab.web.app.create_app``, imported only when the
command runs, so the other commands never load FastAPI."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import socket
import sys

from ..errors import ServeError
from .common import DEFAULT_MODEL, DTYPES, FALLBACK_MODEL, at_least, load_model_arg


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be in [1, 65535], got {port}")
    return port


def check_can_listen(host: str, port: int) -> None:
    """Raise ServeError unless ``host:port`` can be bound now, as uvicorn binds it (same family,
    SO_REUSEADDR). Checked before loading models and before saying "serving": a taken port is
    one line, not a "serving" line followed by uvicorn's error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ServeError(
                f"port {port} on {host} is in use (another server?); pick another with --port"
            ) from None
        raise ServeError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: localhost, 127.0.0.0/8, ::1."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def add_serve_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``serve`` (``--model`` repeatable, ``--device``, ``--dtype``, ``--quantize``,
    ``--host``, ``--port``, limits)."""
    p = subparsers.add_parser(
        "serve", help="open the model as a notebook in the browser (a local web app)"
    )
    p.add_argument(
        "--model",
        action="append",
        default=None,
        help=f"a model to serve: {FALLBACK_MODEL} (bundled), a folder or a Hub id; repeat the "
        f"flag to serve several (default: {DEFAULT_MODEL}, or {FALLBACK_MODEL} when that cannot "
        "be had). Requests can only pick among these",
    )
    p.add_argument(
        "--sae",
        action="append",
        default=None,
        help="a sparse autoencoder to serve for the model whose step it reads: tiny-sae "
        "(bundled, for tiny), an `sae train` run or SAE Lens's folder; repeat for several",
    )
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default=None,
        help="weights and activations of every served model (default: float32)",
    )
    p.add_argument(
        "--quantize",
        choices=["int8"],
        default=None,
        help="int8 weights, one scale per output channel, for every served model",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only). Another address "
        "makes the app reachable from the network, with no login: use it only on purpose",
    )
    p.add_argument("--port", type=_port, default=8000, help="(default: 8000)")
    p.add_argument("--max-prompt-tokens", type=at_least(1), default=1024, help="(default: 1024)")
    p.add_argument(
        "--max-new-tokens", type=at_least(1), default=256, help="per request (default: 256)"
    )
    p.add_argument(
        "--max-concurrent",
        type=at_least(1),
        default=2,
        help="model computations at once; more requests wait (default: 2)",
    )
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from ..sae import load_sae
    from ..web.app import create_app

    check_can_listen(args.host, args.port)
    # SAEs are small: read them before the models, so a bad --sae fails at once
    saes = {name: load_sae(name) for name in args.sae or []}
    models = {}
    for name in args.model or [None]:
        one = argparse.Namespace(
            model=name, device=args.device, dtype=args.dtype, quantize=args.quantize
        )
        model = load_model_arg(one)  # with no --model: gpt2, or tiny (then one.model says so)
        models[one.model or DEFAULT_MODEL] = model
    app = create_app(
        models,
        max_prompt_tokens=args.max_prompt_tokens,
        max_new_tokens=args.max_new_tokens,
        max_concurrent=args.max_concurrent,
        saes=saes,
    )
    if not is_loopback(args.host):
        print(
            f"gpt2lab: warning: listening on {args.host}, so other machines can reach this "
            "app; it has no login",
            file=sys.stderr,
        )
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"gpt2lab: serving {', '.join(models)} at http://{host}:{args.port}/", flush=True)
    print("gpt2lab: press Ctrl-C to stop", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
