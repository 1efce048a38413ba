"""``python -m topup_guard.sim``: the simulator without the CLI (same options as ``simulate``)."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    from topup_guard.sim.server import serve_forever

    parser = argparse.ArgumentParser(prog="python -m topup_guard.sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--scenario", default=None, help="scenario JSON (default: bursty)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    parser.add_argument("--tls-cert", default=None)
    parser.add_argument("--tls-key", default=None)
    args = parser.parse_args(argv)
    return serve_forever(
        args.host, args.port, args.scenario, args.speed, args.tls_cert, args.tls_key
    )


if __name__ == "__main__":
    raise SystemExit(main())
