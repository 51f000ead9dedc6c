"""What the client scripts (openai_client.py, ollama_client.py) share: failing with a message
on stderr, logging progress on stdout, and running the scenario named on the command line."""

import sys
import urllib.parse


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def log(msg):
    print(msg, flush=True)


def run_scenario(args, scenarios, importable):
    """`check` only prints what `importable()` returns (the client imports); any other scenario
    is the function of that name in `scenarios`, run against a server on loopback only."""
    if args.scenario == "check":
        print(importable())
        return
    host = urllib.parse.urlparse(args.base_url).hostname
    check(host == "127.0.0.1", f"loopback only, not {host}")
    scenarios[args.scenario](args)
