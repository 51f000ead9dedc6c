"""What the client scripts (openai_client.py, ollama_client.py) share: failing with a message
on stderr and logging progress on stdout."""

import sys


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def log(msg):
    print(msg, flush=True)
