#!/usr/bin/env python3
"""Drives `candor serve`'s Ollama API with the official `ollama` client (and httpx for raw HTTP).

Run by crates/cli/tests/ollama.rs, one scenario per call:

    ollama_client.py check
    ollama_client.py functional --base-url URL --model ID
    ollama_client.py auth       --base-url URL --model ID --api-key KEY

Each scenario asserts as it goes and exits non-zero on the first failure. Only loopback URLs
are accepted. The wire-format checks compare each route's JSON with the examples of Ollama's API
reference (docs/api.md in the ollama repository): every key an example shows must be there,
with the same JSON type.
"""

import argparse
import datetime
import json
import time

from client_util import check, fail, log, run_scenario

# Greedy answers of the default model; the OpenAI client's tests expect the same.
QUESTION = "What is 2+2?"
ANSWER = "The answer to this classic math problem is 4."
ONCE = "Once upon a time"
ONCE_19 = ", the city of Nova Haven was a thriving metropolis, with towering skyscrapers and bustling streets. But"
STORY = "Write a very long story about a dragon who learns to read."

# The documented examples' keys and types (Ollama's docs/api.md).
DOC_CHAT_PART = {"model": str, "created_at": str, "message": {"role": str, "content": str}, "done": bool}
DOC_STATS = {
    "done_reason": str,
    "total_duration": int,
    "load_duration": int,
    "prompt_eval_count": int,
    "prompt_eval_duration": int,
    "eval_count": int,
    "eval_duration": int,
}
DOC_CHAT_FINAL = {**DOC_CHAT_PART, **DOC_STATS}
DOC_GENERATE_PART = {"model": str, "created_at": str, "response": str, "done": bool}
DOC_GENERATE_FINAL = {**DOC_GENERATE_PART, **DOC_STATS, "context": list}
DOC_DETAILS = {
    "parent_model": str,
    "format": str,
    "family": str,
    "families": list,
    "parameter_size": str,
    "quantization_level": str,
}
DOC_TAG = {"name": str, "model": str, "modified_at": str, "size": int, "digest": str, "details": DOC_DETAILS}
DOC_PS = {
    "name": str,
    "model": str,
    "size": int,
    "digest": str,
    "details": DOC_DETAILS,
    "expires_at": str,
    "size_vram": int,
}
DOC_SHOW = {
    "modelfile": str,
    "parameters": str,
    "template": str,
    "details": DOC_DETAILS,
    "model_info": dict,
    "capabilities": list,
    "license": str,
}
DOC_VERSION = {"version": str}


def shape(obj, doc, what):
    """Every key of the documented example is present, with the documented JSON type."""
    check(isinstance(obj, dict), f"{what}: not an object: {obj!r}")
    for k, t in doc.items():
        check(k in obj, f"{what}: no `{k}` in {sorted(obj)}")
        if isinstance(t, dict):
            shape(obj[k], t, f"{what}.{k}")
        elif t is int:
            check(isinstance(obj[k], int) and not isinstance(obj[k], bool), f"{what}.{k}: {obj[k]!r} not an integer")
        else:
            check(isinstance(obj[k], t), f"{what}.{k}: {obj[k]!r} not {t.__name__}")


def rfc3339(s, what):
    try:
        return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{what}: {s!r} is not RFC 3339")


def client(args, **kw):
    import ollama

    return ollama.Client(host=args.base_url, timeout=120, **kw)


def expect_error(fn, status, words=(), what=""):
    """The call fails with Ollama's error shape: the client's ResponseError, status and text."""
    import ollama

    try:
        r = fn()
        if hasattr(r, "__next__"):
            list(r)
    except ollama.ResponseError as e:
        check(e.status_code == status, f"{what}: status {e.status_code}, wanted {status}: {e.error}")
        for w in words:
            check(w in e.error, f"{what}: {w!r} not in {e.error!r}")
        log(f"ok: {what} -> {status} {e.error[:90]!r}")
        return e
    fail(f"{what}: succeeded, wanted {status}")


def raw(args, method, path, body=None, content=None, **kw):
    import httpx

    if body is not None:
        content = json.dumps(body)
    return httpx.request(method, args.base_url + path, content=content, timeout=120, **kw)


def ndjson(r, what):
    check(r.status_code == 200, f"{what}: {r.status_code} {r.text[:300]}")
    ctype = r.headers.get("content-type", "")
    check(ctype.startswith("application/x-ndjson"), f"{what}: content-type {ctype}")
    lines = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    check(len(lines) >= 2, f"{what}: {len(lines)} lines")
    return lines


def chat_and_generate(args, c):
    """The client's chat and generate, streamed and not, equal the OpenAI route's greedy answer."""
    m = args.model
    greedy = {"temperature": 0, "num_predict": 40}
    via_openai = raw(
        args,
        "POST",
        "/v1/chat/completions",
        {"model": m, "messages": [{"role": "user", "content": QUESTION}], "temperature": 0, "max_tokens": 40},
    ).json()["choices"][0]["message"]["content"]
    check(via_openai == ANSWER, f"OpenAI route: {via_openai!r}")

    r = c.chat(model=m, messages=[{"role": "user", "content": QUESTION}], options=greedy, stream=False)
    check(r.message.content == ANSWER, f"chat: {r.message.content!r}")
    check(r.message.role == "assistant" and r.done and r.done_reason == "stop", f"chat end: {r}")
    check(r.model == m, f"chat echoes the model name: {r.model}")
    check(r.prompt_eval_count > 5 and r.eval_count > 5, f"chat counts: {r}")
    check(0 < r.eval_duration <= r.total_duration and r.prompt_eval_duration > 0, f"chat durations: {r}")
    log(f"ok: chat: {r.message.content!r} ({r.prompt_eval_count}+{r.eval_count} tokens)")
    final = r

    parts = list(c.chat(model=m, messages=[{"role": "user", "content": QUESTION}], options=greedy, stream=True))
    text = "".join(p.message.content or "" for p in parts)
    check(text == ANSWER, f"streamed chat: {text!r}")
    check(all(not p.done for p in parts[:-1]) and parts[-1].done, "only the last part is done")
    check(parts[-1].message.content == "" and parts[-1].eval_count == final.eval_count, f"stream end: {parts[-1]}")
    log(f"ok: streamed chat in {len(parts)} parts")

    # Generate applies the model's chat template to the prompt, as Ollama does.
    g = c.generate(model=m + ":latest", prompt=QUESTION, options=greedy, stream=False)
    check(g.response == ANSWER, f"generate: {g.response!r}")
    check(g.model == m + ":latest", f"generate echoes the name: {g.model}")
    ctx = list(g.context or [])
    # The prompt, the answer and the end-of-sequence token that finished it.
    check(len(ctx) == g.prompt_eval_count + g.eval_count + 1, f"context: {len(ctx)} ids for {g}")
    parts = list(c.generate(model=m, prompt=QUESTION, options=greedy, stream=True))
    check("".join(p.response for p in parts) == ANSWER, f"streamed generate: {parts}")
    check(list(parts[-1].context or []) == ctx, "streamed generate ends with the same context")
    follow = c.generate(model=m, prompt="And 3+3?", context=ctx, options=greedy, stream=False)
    check(follow.prompt_eval_count > len(ctx), f"generate with context: {follow}")
    check(follow.response.startswith("The answer") and "system" not in follow.response, f"with context: {follow}")
    log(f"ok: generate, streamed and not, and with the context sent back: {follow.response!r}")

    # Raw: the prompt as is (as /v1/completions takes it), num_predict, stop strings.
    g = c.generate(model=m, prompt=ONCE, raw=True, options={"temperature": 0, "num_predict": 19}, stream=False)
    check(g.response == ONCE_19 and g.done_reason == "length" and g.eval_count == 19, f"raw generate: {g}")
    check(g.context is None, "raw generate returns no context")
    g = c.generate(model=m, prompt=ONCE, raw=True, options={"temperature": 0, "num_predict": 19, "stop": ["."]})
    check(g.response == ONCE_19.split(".")[0] and g.done_reason == "stop", f"raw generate with stop: {g}")
    # num_ctx caps the window: what the prompt leaves of 10 tokens.
    g = c.generate(model=m, prompt=ONCE, raw=True, options={"temperature": 0, "num_ctx": 10}, stream=False)
    check(g.done_reason == "length" and g.eval_count == 10 - g.prompt_eval_count + 1, f"num_ctx: {g}")
    expect_error(
        lambda: c.generate(model=m, prompt=ONCE, raw=True, options={"num_ctx": 3}), 400, ["prompt", "num_ctx is 3"], what="prompt over num_ctx"
    )
    # Options set to null, as some clients send their unset ones, count as absent.
    nulls = {k: None for k in ["mirostat", "tfs_z", "num_gpu", "num_thread", "top_k", "stop", "seed"]}
    g = raw(args, "POST", "/api/generate", {"model": m, "prompt": ONCE, "raw": True, "stream": False, "options": {**nulls, "temperature": 0, "num_predict": 19}})
    check(g.status_code == 200 and g.json()["response"] == ONCE_19, f"null options: {g.text}")
    log("ok: raw generate, num_predict, stop, num_ctx, null options")

    # Name forms: name:tag maps to the manifest id name-tag.
    base, tag = m.rsplit("-", 1)
    r = c.chat(model=f"{base}:{tag}", messages=[{"role": "user", "content": QUESTION}], options=greedy)
    check(r.message.content == ANSWER and r.model == f"{base}:{tag}", f"{base}:{tag}: {r}")
    log(f"ok: {base}:{tag} and {m}:latest name {m}")

    kw = dict(model=m, messages=[{"role": "user", "content": "Tell me a joke."}], options={"temperature": 0.9, "seed": 7, "num_predict": 16})
    a, b = c.chat(**kw).message.content, c.chat(**kw).message.content
    check(a == b and a, f"seeded samples differ: {a!r} vs {b!r}")
    log("ok: options.seed reproduces")


def models(args, c):
    """list, show and ps through the client; the digest and provenance match /v1/models."""
    m = args.model
    prov = raw(args, "GET", "/v1/models").json()["data"][0]["provenance"]
    lst = c.list()
    check([x.model for x in lst.models] == [m + ":latest"], f"list: {lst}")
    e = lst.models[0]
    check(e.digest == prov["files"][0]["sha256"], f"list digest {e.digest} vs {prov['files']}")
    check(e.size == prov["files"][0]["size"], f"list size: {e.size}")
    d = e.details
    check(d.format == "gguf" and d.family == "llama" and d.families == ["llama"], f"details: {d}")
    check(d.quantization_level == "Q4_1" and d.parameter_size.endswith("M"), f"details: {d}")
    log(f"ok: list: {e.model} {e.size} bytes, {d.parameter_size} {d.quantization_level}, sha256 {e.digest[:16]}…")

    s = c.show(m)
    check(s.details.family == "llama", f"show details: {s.details}")
    check("Apache" in (s.license or ""), f"show license: {s.license!r}")
    check("<|im_start|>" in (s.template or ""), f"show template: {s.template!r}")
    check((s.modelinfo or {}).get("general.architecture") == "llama", f"show model_info: {s.modelinfo}")
    check(s.capabilities == ["completion"], f"capabilities: {s.capabilities}")
    check("temperature" in (s.parameters or ""), f"parameters: {s.parameters!r}")
    shown = raw(args, "POST", "/api/show", {"model": m}).json()["provenance"]
    check(shown["manifest"]["id"] == m and shown["root_digest"] == prov["root_digest"], f"show provenance: {shown}")
    check(shown["openness"] == prov["openness"] and shown["openness"], f"show openness: {shown}")
    log(f"ok: show: license, template, model_info, provenance (openness {shown['openness']})")

    p = c.ps()
    check([x.model for x in p.models] == [m + ":latest"] and p.models[0].digest == e.digest, f"ps: {p}")
    log("ok: ps")


def refusals(args, c):
    m = args.model
    for what, fn in [
        ("pull", lambda: c.pull(m)),
        ("push", lambda: c.push(m)),
        ("create", lambda: c.create(model="mine", from_=m)),
        ("delete", lambda: c.delete(m)),
        ("copy", lambda: c.copy(m, "other")),
    ]:
        expect_error(fn, 403, ["candor pull", "verification"], what=f"/api/{what}")
    r = raw(args, "HEAD", "/api/blobs/sha256:" + "0" * 64)
    check(r.status_code == 403, f"HEAD /api/blobs: {r.status_code}")

    msgs = [{"role": "user", "content": "hi"}]
    e = expect_error(lambda: c.chat(model="no-such-model", messages=msgs), 404, ["model 'no-such-model' not found"], what="unknown model")
    expect_error(lambda: c.chat(model="no-such-model", messages=msgs, stream=True), 404, what="unknown model, streamed")
    expect_error(lambda: c.show("no-such-model"), 404, ["not found"], what="show unknown model")
    # `format`: constrained decoding, so the answer parses whatever the model would have said.
    r = c.chat(model=m, messages=msgs, format="json", options={"temperature": 0, "num_predict": 64})
    check(isinstance(json.loads(r.message.content), dict), f"format json: {r.message.content!r}")
    schema = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0, "maximum": 150}}, "required": ["age"], "additionalProperties": False}
    r = c.generate(model=m, prompt="Tom is 7 years old. As JSON:", format=schema, options={"temperature": 0, "num_predict": 32})
    check(r.done_reason == "stop" and json.loads(r.response) == {"age": 7}, f"format schema: {r.response!r}")
    r = raw(args, "POST", "/api/chat", {"model": m, "messages": msgs, "format": "xml"})
    check(r.status_code == 400 and "format" in r.json()["error"], f"format xml: {r.status_code} {r.text}")
    expect_error(lambda: c.chat(model=m, messages=msgs, format={"type": "object", "x-frobnicate": 1, "properties": {"a": {"type": "string", "format": "frobnicate"}}}), 400, ["format"], what="format with an unsupported keyword")
    tool = {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {}}}}
    expect_error(lambda: c.chat(model=m, messages=msgs, tools=[tool]), 400, ["tools", "tool calling"], what="tools")
    # `think` splits a thinking model's reasoning off; SmolLM2 does not think, so all is content.
    r = c.chat(model=m, messages=msgs, think=True, options={"temperature": 0, "num_predict": 40})
    check(r.message.content == c.chat(model=m, messages=msgs, options={"temperature": 0, "num_predict": 40}).message.content and not r.message.thinking, f"think=true: {r.message}")
    check(c.generate(model=m, prompt="x", think="high", options={"num_predict": 2}).done, "a thinking level is accepted")
    check(c.chat(model=m, messages=msgs, think=False, options={"num_predict": 2}).done, "think=false is accepted")
    expect_error(lambda: c.generate(model=m, prompt="x", template="{{ .Prompt }}"), 400, ["template"], what="template")
    expect_error(lambda: c.generate(model=m, prompt="x", images=[b"\x89PNG"]), 400, ["images"], what="images")
    expect_error(lambda: c.chat(model=m, messages=msgs, options={"temperature": 5}), 400, ["options.temperature"], what="temperature 5")
    expect_error(lambda: c.chat(model=m, messages=msgs, options={"mirostat": 2}), 400, ["options.mirostat"], what="mirostat")
    expect_error(lambda: c.generate(model=m, prompt="hello " * 6000, options={"num_predict": 1}), 400, ["prompt"], what="prompt over the context")
    check(e.error.startswith("model 'no-such-model' not found"), f"Ollama's wording: {e.error}")


def wire(args):
    """Raw HTTP: each route's JSON against the documented examples, and bad input."""
    m = args.model
    msgs = [{"role": "user", "content": QUESTION}]
    lines = ndjson(raw(args, "POST", "/api/chat", {"model": m, "messages": msgs, "options": {"temperature": 0, "num_predict": 40}}), "chat")
    for part in lines[:-1]:
        shape(part, DOC_CHAT_PART, "chat part")
        check(part["done"] is False, f"chat part: {part}")
    shape(lines[-1], DOC_CHAT_FINAL, "chat final")
    rfc3339(lines[-1]["created_at"], "chat created_at")
    check("".join(p["message"]["content"] for p in lines) == ANSWER, "chat lines")

    lines = ndjson(raw(args, "POST", "/api/generate", {"model": m, "prompt": QUESTION, "options": {"temperature": 0}}), "generate")
    for part in lines[:-1]:
        shape(part, DOC_GENERATE_PART, "generate part")
    shape(lines[-1], DOC_GENERATE_FINAL, "generate final")
    check(all(isinstance(t, int) for t in lines[-1]["context"]), "context holds token ids")

    one = raw(args, "POST", "/api/generate", {"model": m, "prompt": QUESTION, "stream": False, "options": {"temperature": 0}})
    check(one.headers["content-type"].startswith("application/json"), f"stream false: {one.headers}")
    shape(one.json(), DOC_GENERATE_FINAL, "generate, not streamed")
    check(one.json()["response"] == ANSWER, f"generate, not streamed: {one.text}")
    one = raw(args, "POST", "/api/chat", {"model": m, "messages": msgs, "stream": False, "options": {"temperature": 0}})
    shape(one.json(), DOC_CHAT_FINAL, "chat, not streamed")

    # Load requests (no messages, no prompt) answer at once; unloading is refused.
    for path, body in [("/api/chat", {"model": m, "messages": []}), ("/api/generate", {"model": m})]:
        r = raw(args, "POST", path, body)
        check(r.status_code == 200 and r.json()["done"] and r.json()["done_reason"] == "load", f"load via {path}: {r.text}")
    r = raw(args, "POST", "/api/generate", {"model": m, "keep_alive": 0})
    check(r.status_code == 400 and "keep_alive" in r.json()["error"], f"unload: {r.status_code} {r.text}")
    for keep in ["10m", 0, -1]:
        r = raw(args, "POST", "/api/chat", {"model": m, "messages": msgs, "keep_alive": keep, "options": {"num_predict": 1}, "stream": False})
        check(r.status_code == 200 and r.json()["done"], f"keep_alive {keep!r} accepted with a prompt: {r.text}")
    r = raw(args, "GET", "/")
    check(r.status_code == 200 and "candor" in r.text, f"GET /: {r.status_code} {r.text}")

    tags = raw(args, "GET", "/api/tags").json()
    shape(tags["models"][0], DOC_TAG, "tags")
    rfc3339(tags["models"][0]["modified_at"], "tags modified_at")
    check(len(tags["models"][0]["digest"]) == 64, f"digest: {tags}")
    shape(raw(args, "GET", "/api/ps").json()["models"][0], DOC_PS, "ps")
    shape(raw(args, "POST", "/api/show", {"model": m}).json(), DOC_SHOW, "show")
    shape(raw(args, "GET", "/api/version").json(), DOC_VERSION, "version")
    log("ok: every route's JSON has the documented keys and types")

    def error(r, status, words, what):
        check(r.status_code == status, f"{what}: {r.status_code} {r.text[:300]}")
        body = r.json()
        check(list(body) == ["error"] and isinstance(body["error"], str), f"{what}: Ollama's error shape: {body}")
        for w in words:
            check(w in body["error"], f"{what}: {w!r} not in {body['error']!r}")

    error(raw(args, "POST", "/api/chat", content=b"{not json"), 400, ["JSON"], "bad JSON")
    error(raw(args, "POST", "/api/chat", {"model": m, "messages": "hi"}), 400, ["messages"], "messages not an array")
    error(raw(args, "POST", "/api/chat", {"model": m, "messages": msgs, "stream": "no"}), 400, ["stream"], "stream not a boolean")
    error(raw(args, "POST", "/api/chat", {"model": m, "messages": msgs, "temprature": 0}), 400, ["temprature", "unknown"], "unknown field")
    error(raw(args, "POST", "/api/chat", {"model": m, "messages": msgs, "options": {"num_ctx": "big"}}), 400, ["options.num_ctx"], "num_ctx not an integer")
    error(raw(args, "POST", "/api/generate", {"prompt": "x"}), 400, ["model"], "no model")
    error(raw(args, "POST", "/api/generate", {"model": m, "prompt": "x", "context": [10**9]}), 400, ["context"], "context outside the vocabulary")
    big = json.dumps({"model": m, "prompt": "x" * (2 << 20)})
    error(raw(args, "POST", "/api/generate", content=big), 413, [], "2 MiB body")
    error(raw(args, "POST", "/api/embed", {"model": m, "input": "x"}), 501, ["embeddings"], "embed")
    error(raw(args, "GET", "/api/nothing"), 404, [], "unknown /api route")
    log("ok: bad input answers 400/413/404/501 in Ollama's error shape, naming the field")


def disconnect(args, c):
    """A client that leaves mid-stream cancels its generation; the next request is served."""
    import httpx

    def stats():
        return next(x for x in httpx.get(args.base_url + "/health", timeout=10).json()["models"] if x["id"] == args.model)

    before = stats()
    s = c.chat(model=args.model, messages=[{"role": "user", "content": STORY}], options={"num_predict": 2000}, stream=True)
    for _ in range(3):
        next(s)
    s.close()
    deadline = time.monotonic() + 30
    while not (stats()["cancelled"] > before["cancelled"] and not stats()["busy"]):
        check(time.monotonic() < deadline, f"not cancelled after the client left: {stats()}")
        time.sleep(0.1)
    log("ok: leaving mid-stream cancels the generation")


def functional(args):
    from importlib.metadata import version

    c = client(args)
    chat_and_generate(args, c)
    models(args, c)
    refusals(args, c)
    wire(args)
    disconnect(args, c)
    v = raw(args, "GET", "/api/version").json()["version"]
    log(f"ok: functional scenario with ollama {version('ollama')} against candor {v}")


def auth(args):
    m = args.model
    bad = client(args, headers={"Authorization": "Bearer wrong-key"})
    expect_error(lambda: bad.list(), 401, ["API key"], what="wrong key, list")
    expect_error(lambda: bad.chat(model=m, messages=[{"role": "user", "content": "hi"}]), 401, what="wrong key, chat")
    r = raw(args, "GET", "/api/version")
    check(r.status_code == 401 and list(r.json()) == ["error"], f"no key: {r.status_code} {r.text}")
    good = client(args, headers={"Authorization": f"Bearer {args.api_key}"})
    check([x.model for x in good.list().models] == [m + ":latest"], "list with the key")
    r = good.chat(model=m, messages=[{"role": "user", "content": QUESTION}], options={"temperature": 0, "num_predict": 40})
    check(r.message.content == ANSWER, f"chat with the key: {r.message.content!r}")
    log("ok: --api-key enforced on /api")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["check", "functional", "auth"])
    ap.add_argument("--base-url")
    ap.add_argument("--model")
    ap.add_argument("--api-key")
    args = ap.parse_args()
    run_scenario(args, globals(), importable)


def importable():
    import httpx  # noqa: F401
    import ollama  # noqa: F401

    return "ollama client importable"


if __name__ == "__main__":
    main()
