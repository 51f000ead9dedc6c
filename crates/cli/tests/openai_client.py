#!/usr/bin/env python3
"""Drives `candor serve` with the official `openai` client (and httpx for raw HTTP).

Run by crates/cli/tests/serve.rs, one scenario per call:

    openai_client.py check
    openai_client.py functional --base-url URL --model ID
    openai_client.py structured --base-url URL --model ID
    openai_client.py tools      --base-url URL --model ID
    openai_client.py auth       --base-url URL --model ID --api-key KEY
    openai_client.py queue      --base-url URL --model ID        (server run with --parallel 1 --queue-size 1)
    openai_client.py shutdown   --base-url URL --model ID --pid PID
    openai_client.py load       --base-url URL --model ID [--clients 32 --requests 200 --max-tokens 16 --deadline 170]

Each scenario asserts as it goes and exits non-zero on the first failure. Only loopback URLs
are accepted.
"""

import argparse
import asyncio
import json
import math
import os
import signal
import sys
import threading
import time

from client_util import check, fail, log, run_scenario

QUESTION = "What is 2+2?"
ANSWER = "The answer to this classic math problem is 4."
ONCE = "Once upon a time"
ONCE_19 = ", the city of Nova Haven was a thriving metropolis, with towering skyscrapers and bustling streets. But"
STORY = "Write a very long story about a dragon who learns to read."


def error_of(e):
    """The OpenAI error object of an APIStatusError, whatever the client version unwraps."""
    body = getattr(e, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    return body if isinstance(body, dict) else {}


def client(args, **kw):
    from openai import OpenAI

    return OpenAI(
        base_url=args.base_url + "/v1",
        api_key=kw.pop("api_key", "unused"),
        max_retries=0,
        timeout=120,
        **kw,
    )


def health(args):
    import httpx

    return httpx.get(args.base_url + "/health", timeout=10).json()


def model_health(args):
    return next(m for m in health(args)["models"] if m["id"] == args.model)


def expect_status(fn, status, param=None, code=None, what=""):
    import openai

    try:
        fn()
    except openai.APIStatusError as e:
        err = error_of(e)
        check(e.status_code == status, f"{what}: status {e.status_code}, wanted {status}: {err}")
        check(err.get("type"), f"{what}: error body has a type: {err}")
        check(err.get("message"), f"{what}: error body has a message: {err}")
        if param is not None:
            check(err.get("param") == param, f"{what}: param {err.get('param')!r}, wanted {param!r}")
        if code is not None:
            check(err.get("code") == code, f"{what}: code {err.get('code')!r}, wanted {code!r}")
        log(f"ok: {what} -> {status} {err.get('param') or err.get('code') or ''}")
        return err
    fail(f"{what}: succeeded, wanted {status}")


def chat_text(stream):
    """Text, finish reason and usage of a streamed chat completion."""
    text, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                text.append(c.delta.content)
            if c.finish_reason:
                finish = c.finish_reason
    return "".join(text), finish, usage


def functional(args):
    import httpx
    import openai

    c = client(args)
    m = args.model

    # Models, with provenance.
    models = c.models.list()
    ids = [x.id for x in models.data]
    check(ids == [m], f"models: {ids}")
    d = models.data[0].model_dump()
    prov = d.get("provenance") or {}
    check(len(prov.get("root_digest") or "") >= 64, f"root digest: {prov}")
    files = prov.get("files") or []
    check(files and all(len(f.get("sha256") or "") == 64 for f in files), f"file sha256s: {files}")
    check(prov.get("license"), f"license: {prov}")
    check(prov.get("openness"), f"openness: {prov}")
    check(prov.get("verified_at", "").endswith("Z"), f"verified_at: {prov}")
    check(isinstance(prov.get("verification_ms"), (int, float)), f"verification_ms: {prov}")
    check(c.models.retrieve(m).id == m, "retrieve")
    log(f"ok: models: {m}, license {prov['license']}, openness {prov['openness']}, root {prov['root_digest'][:16]}…")
    expect_status(lambda: c.models.retrieve("no-such-model"), 404, code="model_not_found", what="retrieve unknown")

    # Chat, greedy.
    r = c.chat.completions.create(
        model=m, messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=40
    )
    got = r.choices[0].message.content
    check(got == ANSWER, f"chat: {got!r}")
    check(r.choices[0].finish_reason == "stop", f"chat finish: {r.choices[0].finish_reason}")
    check(r.object == "chat.completion" and r.id.startswith("chatcmpl-"), f"chat object: {r}")
    u = r.usage
    check(u.prompt_tokens > 5 and u.completion_tokens > 5, f"usage: {u}")
    check(u.total_tokens == u.prompt_tokens + u.completion_tokens, f"usage total: {u}")
    log(f"ok: chat: {got!r} usage {u.prompt_tokens}+{u.completion_tokens}")

    # Chat, streamed, with usage.
    s = c.chat.completions.create(
        model=m,
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0,
        max_tokens=40,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = chat_text(s)
    check(text == ANSWER, f"streamed chat: {text!r}")
    check(finish == "stop", f"streamed finish: {finish}")
    check(usage is not None and usage.completion_tokens == u.completion_tokens, f"streamed usage: {usage}")
    # The same prompt again (the prefix cache is on by default): all but its last token are
    # read from the cache.
    cached = usage.prompt_tokens_details.cached_tokens
    check(cached == usage.prompt_tokens - 1, f"cached prompt tokens of a repeated prompt: {usage}")
    log(f"ok: streamed chat: {text!r}, {cached} prompt tokens from the prefix cache")

    # Completion: max_tokens, then a stop string, streamed.
    r = c.completions.create(model=m, prompt=ONCE, max_tokens=19, temperature=0)
    check(r.choices[0].text == ONCE_19, f"completion: {r.choices[0].text!r}")
    check(r.choices[0].finish_reason == "length", f"completion finish: {r.choices[0].finish_reason}")
    check(r.usage.completion_tokens == 19, f"completion usage: {r.usage}")
    log(f"ok: completion: {r.choices[0].text!r}")
    s = c.completions.create(model=m, prompt=ONCE, max_tokens=19, temperature=0, stop=["."], stream=True)
    parts, finish = [], None
    for chunk in s:
        for ch in chunk.choices:
            parts.append(ch.text)
            finish = ch.finish_reason or finish
    check("".join(parts) == ONCE_19.split(".")[0], f"streamed completion with stop: {''.join(parts)!r}")
    check(finish == "stop", f"streamed completion finish: {finish}")
    log("ok: streamed completion with a stop string")

    # Same seed, same sample.
    kw = dict(model=m, messages=[{"role": "user", "content": "Tell me a joke."}], temperature=0.9, seed=7, max_tokens=16)
    a = c.chat.completions.create(**kw).choices[0].message.content
    b = c.chat.completions.create(**kw).choices[0].message.content
    check(a == b and a, f"seeded samples differ: {a!r} vs {b!r}")
    log("ok: seed reproduces")

    # Invalid requests name the field.
    msgs = [{"role": "user", "content": "hi"}]
    expect_status(lambda: c.chat.completions.create(model=m, messages=msgs, n=2), 400, param="n", what="n=2")
    expect_status(
        lambda: c.chat.completions.create(model=m, messages=msgs, temperature=5), 400, param="temperature", what="temperature=5"
    )
    expect_status(lambda: c.chat.completions.create(model=m, messages=[]), 400, param="messages", what="no messages")
    expect_status(
        lambda: c.chat.completions.create(model=m, messages=[{"role": "wizard", "content": "x"}]),
        400,
        param="messages[0].role",
        what="bad role",
    )
    expect_status(lambda: c.completions.create(model=m, prompt=""), 400, param="prompt", what="empty prompt")
    expect_status(
        lambda: c.completions.create(model=m, prompt="x", max_tokens=4, extra_body={"stop": 3}), 400, param="stop", what="stop=3"
    )
    expect_status(
        lambda: c.chat.completions.create(model="no-such-model", messages=msgs), 404, code="model_not_found", what="unknown model"
    )
    long_prompt = "hello " * 6000
    expect_status(
        lambda: c.completions.create(model=m, prompt=long_prompt, max_tokens=1),
        400,
        param="prompt",
        code="context_length_exceeded",
        what="prompt longer than the context",
    )
    raw = httpx.post(args.base_url + "/v1/chat/completions", content=b"{not json", timeout=30)
    check(raw.status_code == 400 and "error" in raw.json(), f"bad JSON: {raw.status_code} {raw.text}")
    big = json.dumps({"model": m, "prompt": "x" * (2 << 20)})
    raw = httpx.post(args.base_url + "/v1/completions", content=big, headers={"content-type": "application/json"}, timeout=30)
    check(raw.status_code == 413, f"2 MiB body: {raw.status_code} {raw.text[:200]}")
    check(raw.json()["error"]["type"] == "invalid_request_error", f"413 body: {raw.text[:200]}")
    log("ok: bad JSON -> 400, 2 MiB body -> 413")

    # The server answers /health and /v1/models while it generates.
    before = model_health(args)
    s = c.chat.completions.create(
        model=m, messages=[{"role": "user", "content": STORY}], temperature=0, max_tokens=2000, stream=True
    )
    it = iter(s)
    for _ in range(3):
        next(it)
    t0 = time.monotonic()
    h = model_health(args)
    c.models.list()
    took = time.monotonic() - t0
    check(h["busy"], f"busy while generating: {h}")
    check(took < 2.0, f"/health and /v1/models took {took:.2f}s while generating")
    log(f"ok: /health and /v1/models answer in {took * 1000:.0f} ms while generating")

    # Disconnect mid-stream: the generation is cancelled and the server serves the next request.
    s.close()
    deadline = time.monotonic() + 30
    while True:
        h = model_health(args)
        if h["cancelled"] > before["cancelled"] and not h["busy"]:
            break
        check(time.monotonic() < deadline, f"generation not cancelled after the client left: {h}")
        time.sleep(0.1)
    r = c.chat.completions.create(model=m, messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=40)
    check(r.choices[0].message.content == ANSWER, f"after disconnect: {r.choices[0].message.content!r}")
    log("ok: disconnect mid-stream cancels the generation; the next request is served")

    # Unknown routes answer 404 with an error body.
    raw = httpx.get(args.base_url + "/v1/nothing", timeout=10)
    check(raw.status_code == 404 and "error" in raw.json(), f"unknown route: {raw.status_code}")
    check(isinstance(openai.__version__, str), "openai version")
    log(f"ok: functional scenario with openai {openai.__version__}")


def person_model():
    """A schema with what apps ask for: nested objects, enums, arrays with min/max items, required
    and optional fields, bounded numbers, unicode strings."""
    import enum
    from typing import Literal, Optional

    from pydantic import BaseModel, Field

    class Language(str, enum.Enum):
        english = "English"
        french = "French"
        german = "German"
        japanese = "Japanese"

    class Address(BaseModel):
        street: str = Field(max_length=60)
        city: str = Field(max_length=40)
        country: Literal["France", "Germany", "Japan", "Brazil"]

    class Person(BaseModel):
        name: str = Field(max_length=40)
        age: int = Field(ge=0, le=130)
        height_m: float = Field(ge=0.5, le=2.5)
        languages: list[Language] = Field(min_length=1, max_length=3)
        address: Address
        nickname: Optional[str] = Field(default=None, max_length=20)
        motto: str = Field(max_length=60)

    return Person


PERSON_PROMPT = "Describe Amélie, a 34-year-old French teacher in Lyon who speaks French and English and whose motto is « Café ☕ für alle ». Answer in JSON."


def structured(args):
    """Constrained outputs: every answer parses and validates, greedy or sampled, streamed or
    not; unsupported schema features and conflicting constraints are 400s; log-probabilities
    are those of the constrained distribution."""
    import re

    import openai
    from openai.lib._pydantic import to_strict_json_schema

    c = client(args)
    m = args.model
    Person = person_model()
    msgs = [{"role": "user", "content": PERSON_PROMPT}]

    # The official client's parse(): the schema from a Pydantic model, validated by it.
    for seed, temperature in [(0, 0), (1, 1.0), (2, 1.0), (3, 0.8)]:
        r = c.chat.completions.parse(
            model=m, messages=msgs, response_format=Person, temperature=temperature, seed=seed, max_tokens=600
        )
        choice = r.choices[0]
        check(choice.finish_reason == "stop", f"parse seed {seed}: finish {choice.finish_reason}: {choice.message.content!r}")
        check(isinstance(choice.message.parsed, Person), f"parse seed {seed}: {choice.message.content!r}")
        log(f"ok: parse(Person), temperature {temperature}: {choice.message.content}")

    # Streamed, the pieces joined validate too.
    schema = {"type": "json_schema", "json_schema": {"name": "Person", "schema": to_strict_json_schema(Person), "strict": True}}
    text, finish, _ = chat_text(
        c.chat.completions.create(model=m, messages=msgs, response_format=schema, temperature=1.0, seed=5, max_tokens=600, stream=True)
    )
    check(finish == "stop", f"streamed: finish {finish}")
    Person.model_validate_json(text)
    log("ok: streamed json_schema validates")

    # json_object: any JSON object.
    r = c.chat.completions.create(model=m, messages=[{"role": "user", "content": "Give the capital of France as a JSON object."}], response_format={"type": "json_object"}, temperature=0, max_tokens=200)
    check(r.choices[0].finish_reason == "stop", f"json_object: finish {r.choices[0].finish_reason}")
    check(isinstance(json.loads(r.choices[0].message.content), dict), f"json_object: {r.choices[0].message.content!r}")
    log(f"ok: json_object: {r.choices[0].message.content}")

    # The extensions: a regex and a Lark grammar, on both endpoints.
    rx = r"(19|20)[0-9]{2}-(0[1-9]|1[0-2])-[0-2][0-9]"
    r = c.completions.create(model=m, prompt="The first moon landing was on", temperature=1.0, seed=7, max_tokens=20, extra_body={"regex": rx})
    check(re.fullmatch(rx, r.choices[0].text), f"regex: {r.choices[0].text!r}")
    lark = 'start: answer "."\nanswer: "yes" | "no"'
    r = c.chat.completions.create(model=m, messages=[{"role": "user", "content": "Is the sky blue?"}], temperature=0, max_tokens=10, extra_body={"grammar": lark})
    check(r.choices[0].message.content in ("yes.", "no."), f"grammar: {r.choices[0].message.content!r}")
    log(f"ok: regex {r.choices[0].message.content!r}, grammar")

    # What cannot be enforced is refused, never loosened.
    unique = {"type": "json_schema", "json_schema": {"name": "t", "schema": {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}}}
    err = expect_status(lambda: c.chat.completions.create(model=m, messages=msgs, response_format=unique, max_tokens=5), 400, param="response_format.json_schema.schema", what="uniqueItems")
    check("uniqueItems" in err["message"], f"the message names the keyword: {err}")
    expect_status(lambda: c.chat.completions.create(model=m, messages=msgs, max_tokens=5, extra_body={"regex": "("}), 400, param="regex", what="bad regex")
    expect_status(lambda: c.chat.completions.create(model=m, messages=msgs, response_format={"type": "json_object"}, max_tokens=5, extra_body={"regex": "a"}), 400, param="regex", what="two constraints")
    expect_status(lambda: c.chat.completions.create(model=m, messages=msgs, response_format={"type": "xml"}, max_tokens=5), 400, param="response_format.type", what="unknown format")

    # Log-probabilities: greedy picks the likeliest; the alternatives are sorted and sum below 1.
    r = c.chat.completions.create(model=m, messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=12, logprobs=True, top_logprobs=5)
    content = r.choices[0].logprobs.content
    check(len(content) == r.usage.completion_tokens, f"one entry per token: {len(content)} vs {r.usage.completion_tokens}")
    check("".join(t.token for t in content) == r.choices[0].message.content, "tokens spell the content")
    for t in content:
        lps = [a.logprob for a in t.top_logprobs]
        check(len(lps) == 5 and lps == sorted(lps, reverse=True), f"top 5 sorted: {lps}")
        check(t.top_logprobs[0].token == t.token and abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6, f"greedy takes the likeliest: {t}")
        check(sum(math.exp(x) for x in lps) <= 1.0001 and t.logprob <= 0, f"probabilities: {lps}")
        check(bytes(t.bytes).decode("utf-8", "replace") == t.token, f"bytes: {t}")
    streamed = [
        t for chunk in c.chat.completions.create(model=m, messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=12, logprobs=True, top_logprobs=5, stream=True)
        for ch in chunk.choices if ch.logprobs and ch.logprobs.content for t in ch.logprobs.content
    ]
    check([(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in content], "streamed log-probabilities equal the whole answer's")
    r = c.completions.create(model=m, prompt=ONCE, temperature=0, max_tokens=8, logprobs=3)
    lp = r.choices[0].logprobs
    check(len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 8, f"completions logprobs: {lp}")
    check("".join(lp.tokens) == r.choices[0].text and all(len(d) == 3 for d in lp.top_logprobs), f"completions logprobs: {lp}")
    # Under a constraint, the distribution is the constrained one: only "yes" or "no" can start.
    r = c.chat.completions.create(model=m, messages=[{"role": "user", "content": "Is the sky blue?"}], temperature=0, max_tokens=3, logprobs=True, top_logprobs=20, extra_body={"regex": "(yes|no)"})
    first = r.choices[0].logprobs.content[0]
    check(all(("yes".startswith(a.token) or "no".startswith(a.token)) and a.token for a in first.top_logprobs), f"constrained alternatives: {first.top_logprobs}")
    check(abs(sum(math.exp(a.logprob) for a in first.top_logprobs) - 1) < 1e-3, f"they hold all the mass: {first.top_logprobs}")
    expect_status(lambda: c.chat.completions.create(model=m, messages=msgs, max_tokens=2, top_logprobs=3), 400, param="top_logprobs", what="top_logprobs without logprobs")
    expect_status(lambda: c.chat.completions.create(model=m, messages=msgs, max_tokens=2, logprobs=True, top_logprobs=21), 400, param="top_logprobs", what="top_logprobs 21")
    log("ok: logprobs")

    # Reasoning: `<think>…</think>` comes apart into reasoning_content (forced here by a grammar,
    # as SmolLM2 does not think; "deepseek" splits whatever the template).
    think = 'start: "<think>" /[a-z]{2,8}( [a-z]{2,8}){0,5}/ "</think>" /[A-Z][a-z]{1,8}( [a-z]{2,8}){0,5}\\./'
    kw = dict(model=m, messages=[{"role": "user", "content": "Is the sky blue?"}], temperature=0, max_tokens=60)
    r = c.chat.completions.create(extra_body={"grammar": think, "reasoning_format": "deepseek"}, **kw)
    msg = r.choices[0].message
    reasoning = getattr(msg, "reasoning_content", None)
    check(reasoning and msg.content and "<think>" not in msg.content + reasoning and "</think>" not in msg.content + reasoning, f"split: {msg}")
    raw = c.chat.completions.create(extra_body={"grammar": think, "reasoning_format": "none"}, **kw).choices[0].message
    check(raw.content == f"<think>{reasoning}</think>{msg.content}" and getattr(raw, "reasoning_content", None) is None, f"none: {raw}")
    parts = {"reasoning_content": [], "content": []}
    for chunk in c.chat.completions.create(extra_body={"grammar": think, "reasoning_format": "deepseek"}, stream=True, **kw):
        for ch in chunk.choices:
            for k in parts:
                if getattr(ch.delta, k, None):
                    parts[k].append(getattr(ch.delta, k))
    check("".join(parts["reasoning_content"]) == reasoning and "".join(parts["content"]) == msg.content, f"streamed: {parts}")
    expect_status(lambda: c.chat.completions.create(extra_body={"reasoning_format": "maybe"}, **kw), 400, param="reasoning_format", what="unknown reasoning format")
    log(f"ok: reasoning {reasoning!r} / answer {msg.content!r}")


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 40}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}


def stream_calls(stream):
    """Content, tool calls (as dicts) and finish reason of a streamed chat completion."""
    text, calls, finish = [], {}, None
    for chunk in stream:
        for c in chunk.choices:
            if c.delta.content:
                text.append(c.delta.content)
            for t in c.delta.tool_calls or []:
                call = calls.setdefault(t.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += t.id or ""
                call["name"] += (t.function and t.function.name) or ""
                call["arguments"] += (t.function and t.function.arguments) or ""
            if c.finish_reason:
                finish = c.finish_reason
    return "".join(text), [calls[i] for i in sorted(calls)], finish


def tools(args):
    """An agent loop with the official client: the model calls the tool (required, so even a
    135M model's call is valid), gets the result and answers (auto), streamed and not."""
    c = client(args)
    m = args.model
    question = {"role": "user", "content": "What is the weather in Paris?"}

    def valid(name, arguments):
        a = json.loads(arguments)
        check(name == "get_weather" and set(a) == {"city", "unit"}, f"call: {name} {a}")
        check(isinstance(a["city"], str) and len(a["city"]) <= 40 and a["unit"] in ("celsius", "fahrenheit"), f"arguments: {a}")
        return a

    for stream in (False, True):
        kw = dict(model=m, tools=[WEATHER_TOOL], temperature=0, max_tokens=120)
        if stream:
            _, calls, finish = stream_calls(c.chat.completions.create(messages=[question], tool_choice="required", stream=True, **kw))
        else:
            r = c.chat.completions.create(messages=[question], tool_choice="required", **kw)
            finish = r.choices[0].finish_reason
            calls = [{"id": t.id, "name": t.function.name, "arguments": t.function.arguments} for t in r.choices[0].message.tool_calls or []]
        check(finish == "tool_calls" and calls, f"required: finish {finish}, calls {calls}")
        for call in calls:
            valid(call["name"], call["arguments"])
            check(call["id"].startswith("call_"), f"call id: {call}")
        history = [
            question,
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": t["id"], "type": "function", "function": {"name": t["name"], "arguments": t["arguments"]}} for t in calls]},
        ] + [{"role": "tool", "tool_call_id": t["id"], "content": json.dumps({"temperature": 18, "sky": "cloudy"})} for t in calls]
        if stream:
            text, again, finish = stream_calls(c.chat.completions.create(messages=history, tool_choice="auto", stream=True, **kw))
        else:
            r = c.chat.completions.create(messages=history, tool_choice="auto", **kw)
            text, finish = r.choices[0].message.content or "", r.choices[0].finish_reason
            again = [{"name": t.function.name, "arguments": t.function.arguments} for t in r.choices[0].message.tool_calls or []]
        # Under auto the model may answer or call again; a call is valid either way.
        check(finish in ("stop", "length", "tool_calls"), f"auto: finish {finish}")
        check(bool(text) or bool(again), "auto: an answer or a call")
        for call in again:
            valid(call["name"], call["arguments"])
        log(f"ok: agent loop ({'streamed' if stream else 'whole'}): {calls[0]['arguments']} -> {text[:80]!r} {len(again)} more calls")

    # A named function; `none` keeps the tools out of the answer.
    r = c.chat.completions.create(model=m, messages=[question], tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}}, temperature=0.8, seed=3, max_tokens=120, parallel_tool_calls=False)
    calls = r.choices[0].message.tool_calls
    check(r.choices[0].finish_reason == "tool_calls" and len(calls) == 1, f"named, one call: {r.choices[0]}")
    valid(calls[0].function.name, calls[0].function.arguments)
    r = c.chat.completions.create(model=m, messages=[question], tools=[WEATHER_TOOL], tool_choice="none", temperature=0, max_tokens=30)
    check(not r.choices[0].message.tool_calls and r.choices[0].message.content, f"none: {r.choices[0]}")

    bad = dict(WEATHER_TOOL, function=dict(WEATHER_TOOL["function"], name="get weather"))
    expect_status(lambda: c.chat.completions.create(model=m, messages=[question], tools=[bad], max_tokens=5), 400, param="tools[0].function.name", what="bad tool name")
    expect_status(lambda: c.chat.completions.create(model=m, messages=[question], tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "launch"}}, max_tokens=5), 400, param="tool_choice", what="unknown function")
    expect_status(lambda: c.chat.completions.create(model=m, messages=[question], tool_choice="required", max_tokens=5), 400, param="tool_choice", what="required without tools")
    log("ok: tool_choice named and none, refusals")


def auth(args):
    import httpx
    import openai

    bad = client(args, api_key="wrong-key")
    expect_status(lambda: bad.models.list(), 401, code="invalid_api_key", what="wrong key, models")
    expect_status(
        lambda: bad.chat.completions.create(model=args.model, messages=[{"role": "user", "content": "hi"}]),
        401,
        what="wrong key, chat",
    )
    raw = httpx.get(args.base_url + "/v1/models", timeout=10)
    check(raw.status_code == 401, f"no Authorization header: {raw.status_code}")
    check(httpx.get(args.base_url + "/health", timeout=10).status_code == 200, "/health needs no key")
    good = client(args, api_key=args.api_key)
    check([x.id for x in good.models.list().data] == [args.model], "models with the key")
    r = good.chat.completions.create(
        model=args.model, messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=40
    )
    check(r.choices[0].message.content == ANSWER, f"chat with the key: {r.choices[0].message.content!r}")
    log(f"ok: --api-key enforced (openai {openai.__version__})")


def queue(args):
    """Server with --parallel 1 --queue-size 1: one running, one waiting, the third is refused with 429."""
    c = client(args)
    m = args.model
    running = c.chat.completions.create(
        model=m, messages=[{"role": "user", "content": STORY}], temperature=0, max_tokens=2000, stream=True
    )
    it = iter(running)
    next(it)
    waiting = {}

    def second():
        try:
            r = c.chat.completions.create(
                model=m, messages=[{"role": "user", "content": QUESTION}], temperature=0, max_tokens=40
            )
            waiting["text"] = r.choices[0].message.content
        except Exception as e:  # noqa: BLE001
            waiting["error"] = repr(e)

    t = threading.Thread(target=second)
    t.start()
    # A hang guard, not a speed check: under a parallel test run the two cores are shared by
    # several servers generating at once.
    deadline = time.monotonic() + 60
    while model_health(args)["queued"] < 1:
        check(time.monotonic() < deadline, f"second request never queued: {health(args)}")
        time.sleep(0.05)
    expect_status(
        lambda: c.chat.completions.create(model=m, messages=[{"role": "user", "content": "hi"}], max_tokens=4),
        429,
        code="queue_full",
        what="third request on a full queue",
    )
    running.close()
    t.join(60)
    check(waiting.get("text") == ANSWER, f"queued request: {waiting}")
    log("ok: full queue -> 429; the queued request is served once the running one is cancelled")


def shutdown(args):
    """SIGTERM while a stream is in flight: the stream completes, new requests are refused."""
    import httpx

    c = client(args)
    s = c.chat.completions.create(
        model=args.model,
        messages=[{"role": "user", "content": QUESTION}],
        temperature=0,
        max_tokens=40,
        stream=True,
    )
    it = iter(s)
    first = next(it)
    os.kill(args.pid, signal.SIGTERM)
    text = "".join(ch.delta.content or "" for ch in first.choices)
    finish = None
    for chunk in it:
        for ch in chunk.choices:
            text += ch.delta.content or ""
            finish = ch.finish_reason or finish
    check(text == ANSWER and finish == "stop", f"in-flight stream at shutdown: {text!r} {finish}")
    try:
        r = httpx.get(args.base_url + "/health", timeout=5)
        check(r.status_code == 503, f"/health while shutting down: {r.status_code}")
    except httpx.TransportError:
        pass  # already closed
    log("ok: SIGTERM lets the in-flight stream finish")


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def load(args):
    import httpx
    from openai import AsyncOpenAI

    m = args.model
    prompts = [f"What is {a}+{b}?" for a, b in [(2, 2), (3, 5), (10, 7), (1, 1), (6, 9), (4, 8), (12, 12), (9, 3)]]

    # The reference answers, one request at a time.
    sync = client(args)
    expected = {}
    for p in prompts:
        r = sync.chat.completions.create(
            model=m, messages=[{"role": "user", "content": p}], temperature=0, max_tokens=args.max_tokens
        )
        expected[p] = (r.choices[0].message.content, r.choices[0].finish_reason, r.usage.completion_tokens)

    async def run():
        http = httpx.AsyncClient(limits=httpx.Limits(max_connections=args.clients + 4), timeout=300)
        # No retries: with the queue sized above the concurrency, a 429 is a failure.
        c = AsyncOpenAI(base_url=args.base_url + "/v1", api_key="unused", max_retries=0, http_client=http)
        todo = asyncio.Queue()
        for i in range(args.requests):
            todo.put_nowait(i)
        latencies, ttfts, failures = [], [], []

        async def one(i):
            p = prompts[i % len(prompts)]
            t0 = time.monotonic()
            first = None
            text, finish, usage = [], None, None
            s = await c.chat.completions.create(
                model=m,
                messages=[{"role": "user", "content": p}],
                temperature=0,
                max_tokens=args.max_tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
            async for chunk in s:
                if chunk.usage is not None:
                    usage = chunk.usage
                for ch in chunk.choices:
                    if ch.delta.content:
                        if first is None:
                            first = time.monotonic() - t0
                        text.append(ch.delta.content)
                    finish = ch.finish_reason or finish
            want = expected[p]
            got = ("".join(text), finish, usage.completion_tokens if usage else None)
            if got != want:
                raise AssertionError(f"request {i} ({p!r}): got {got!r}, wanted {want!r}")
            latencies.append(time.monotonic() - t0)
            ttfts.append(first or 0.0)

        async def client_loop():
            while True:
                try:
                    i = todo.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    await one(i)
                except Exception as e:  # noqa: BLE001
                    failures.append(f"{type(e).__name__}: {e}")

        t0 = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.gather(*(client_loop() for _ in range(args.clients))), args.deadline)
        except asyncio.TimeoutError:
            fail(
                f"the load test did not finish within {args.deadline:.0f}s: "
                f"{len(latencies)} of {args.requests} requests done, {len(failures)} failed"
            )
        wall = time.monotonic() - t0
        await http.aclose()
        return latencies, ttfts, failures, wall

    latencies, ttfts, failures, wall = asyncio.run(run())
    summary = {
        "clients": args.clients,
        "requests": args.requests,
        "completed": len(latencies),
        "failed": len(failures),
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 2),
        "latency_ms": {f"p{p}": round(percentile(latencies, p) * 1000) for p in (50, 90, 99)},
        "ttft_ms": {f"p{p}": round(percentile(ttfts, p) * 1000) for p in (50, 90, 99)},
        "max_tokens": args.max_tokens,
    }
    print("LOAD " + json.dumps(summary), flush=True)
    for f in failures[:10]:
        print(f"  failure: {f}", file=sys.stderr)
    check(not failures, f"{len(failures)} of {args.requests} requests failed")
    check(len(latencies) == args.requests, f"{len(latencies)} of {args.requests} requests completed")
    h = model_health(args)
    check(h["queued"] == 0 and not h["busy"], f"server idle after the load test: {h}")
    check_metrics(args, requests=len(prompts) + args.requests, tokens=sum(
        expected[prompts[i % len(prompts)]][2] for i in range(args.requests)
    ) + sum(e[2] for e in expected.values()))


def check_metrics(args, requests, tokens):
    """/metrics, parsed by Prometheus' own client library, counts what the server did."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(args.base_url + "/metrics", timeout=30)
    check(r.status_code == 200, f"/metrics: {r.status_code} {r.text[:200]}")
    check(r.headers["content-type"].startswith("text/plain; version=0.0.4"), f"/metrics type: {r.headers}")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}

    def value(family, sample, **labels):
        for s in families[family].samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
        fail(f"/metrics has no {sample} {labels}:\n{r.text}")

    m = args.model
    for name, kind in [
        ("candor_requests", "counter"),
        ("candor_generated_tokens", "counter"),
        ("candor_prompt_tokens", "counter"),
        ("candor_prompt_tokens_cached", "counter"),
        ("candor_time_to_first_token_seconds", "histogram"),
        ("candor_inter_token_latency_seconds", "histogram"),
        ("candor_slots_busy", "gauge"),
        ("candor_queue_depth", "gauge"),
        ("candor_kv_cache_tokens", "gauge"),
    ]:
        check(name in families and families[name].type == kind, f"/metrics: {name} as a {kind}: {sorted(families)}")
    completed = value("candor_requests", "candor_requests_total", model=m, outcome="completed")
    check(completed == requests, f"/metrics completed {completed}, expected {requests}")
    check(value("candor_requests", "candor_requests_total", model=m, outcome="failed") == 0, "/metrics: failures")
    generated = value("candor_generated_tokens", "candor_generated_tokens_total", model=m)
    check(generated == tokens, f"/metrics generated tokens {generated}, expected {tokens}")
    ttft = value("candor_time_to_first_token_seconds", "candor_time_to_first_token_seconds_count", model=m)
    check(ttft == requests, f"/metrics: {ttft} first tokens for {requests} requests")
    inf = value("candor_time_to_first_token_seconds", "candor_time_to_first_token_seconds_bucket", model=m, le="+Inf")
    check(inf == ttft, f"/metrics: the +Inf bucket {inf} holds every observation {ttft}")
    itl = value("candor_inter_token_latency_seconds", "candor_inter_token_latency_seconds_count", model=m)
    check(itl == tokens - requests, f"/metrics: {itl} inter-token gaps for {tokens} tokens in {requests} requests")
    check(value("candor_slots_busy", "candor_slots_busy", model=m) == 0, "/metrics: slots busy when idle")
    check(value("candor_kv_cache_tokens", "candor_kv_cache_tokens", model=m) > 0, "/metrics: nothing cached")
    log(f"ok: /metrics: {completed:.0f} requests, {generated:.0f} tokens, parsed by prometheus_client")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["check", "functional", "structured", "tools", "auth", "queue", "shutdown", "load"])
    ap.add_argument("--base-url")
    ap.add_argument("--model")
    ap.add_argument("--api-key")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--deadline", type=float, default=170.0, help="seconds the load test may take")
    args = ap.parse_args()
    run_scenario(args, globals(), importable)


def importable():
    import httpx  # noqa: F401
    import openai
    import prometheus_client  # noqa: F401

    return f"openai {openai.__version__}"


if __name__ == "__main__":
    main()
