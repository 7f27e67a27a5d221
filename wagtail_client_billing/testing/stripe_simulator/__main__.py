"""Run the Stripe simulator from the command line.

    python -m wagtail_client_billing.testing.stripe_simulator \
        --port 12111 --webhook-url http://127.0.0.1:8000/billing/stripe/webhook/ \
        --webhook-secret whsec_demo
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from .simulator import StripeSimulator


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m wagtail_client_billing.testing.stripe_simulator",
        description="A local Stripe API, hosted pages and webhook sender for tests and demos.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=12111, help="port (0 picks a free one)")
    parser.add_argument("--webhook-url", help="receives every event, platform and Connect")
    parser.add_argument("--webhook-secret", help="signing secret (whsec_...) for --webhook-url")
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        help="accept only this secret key (repeatable); default: any sk_test_/sk_live_ key",
    )
    parser.add_argument(
        "--retry-base",
        type=float,
        default=1.0,
        help="first webhook retry delay in seconds (doubles each attempt)",
    )
    parser.add_argument("--max-attempts", type=int, default=6, help="webhook delivery attempts")
    parser.add_argument(
        "--settle-delay",
        type=float,
        default=5.0,
        help="seconds before a delayed payment settles (negative: never)",
    )
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Start the simulator and serve until Ctrl-C (or SIGTERM)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    # Requests and deliveries are logged at DEBUG (quiet inside other programs' logging).
    if not args.quiet:
        logging.getLogger("wagtail_client_billing.stripe_simulator").setLevel(logging.DEBUG)
    if args.webhook_secret and not args.webhook_url:
        print("--webhook-secret needs --webhook-url", file=sys.stderr)
        return 2
    sim = StripeSimulator(
        args.host,
        args.port,
        args.webhook_url,
        args.webhook_secret,
        api_keys=args.api_keys,
        webhook_retry_base=args.retry_base,
        webhook_max_attempts=args.max_attempts,
        async_settle_delay=args.settle_delay if args.settle_delay >= 0 else None,
    )
    try:
        sim.start()
    except OSError as exc:
        print(f"Cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    # SIGINT too, explicitly: a shell starting us in the background (``&`` in a script,
    # a test runner started so) passes SIGINT on as ignored, and Python then keeps it so.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    print(f"Stripe simulator listening on {sim.url}", flush=True)
    if args.webhook_url:
        # A secret the user gave is theirs already; print only one made up for them.
        secret = "the given --webhook-secret" if args.webhook_secret else sim.webhook_secret
        print(f"Sending every event to {args.webhook_url}, signed with {secret}", flush=True)
    print(f"Control API: {sim.url}/_simulator/health  (Ctrl-C to stop)", flush=True)
    try:
        # Waking up twice a second: the kernel may hand the signal to one of the server's
        # threads, which cannot interrupt an untimed wait; Python runs the handler in this
        # thread at its next wake-up.
        while not done.wait(0.5):
            pass
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
