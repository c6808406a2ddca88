"""``dspark serve`` through the official ``openai`` client, on a tiny model (127.0.0.1 only)."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from dspark.engine import Engine
from dspark.models import build_drafter
from dspark.serve.launch import ServerThread, build_server
from tests._tiny import greedy_reference, tiny_qwen3, tiny_tokenizer

MAX_LEN = 96


@pytest.fixture(scope="module")
def model():
    target = tiny_qwen3(vocab=260, logit_scale=20.0)
    drafter = build_drafter("dspark", target, num_layers=1, block_size=3).eval()
    return target, drafter, tiny_tokenizer()


def _server(model, **kw):
    target, drafter, tok = model
    opts = {"max_queue": kw.pop("max_queue", 16)}
    eng = Engine(
        target,
        drafter,
        page_size=8,
        max_model_len=MAX_LEN,
        **{"speculation": "fixed", "max_num_seqs": 4, **kw},
    )
    return eng, ServerThread(build_server(eng, tok, "tiny", **opts))


@pytest.fixture(scope="module")
def server(model):
    eng, srv = _server(model)
    with srv:
        yield eng, srv


def _client(srv) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=60)


def _reference_text(model, prompt_ids, n):
    target, _, tok = model
    out = greedy_reference(target, torch.tensor([prompt_ids]), n)[0, len(prompt_ids) :]
    return tok.decode(out.tolist(), skip_special_tokens=True), out.tolist()


def _metrics(srv) -> dict[str, float]:
    """Flat {name{labels}: value} of /metrics."""
    flat = {}
    for fam in text_string_to_metric_families(httpx.get(srv.url + "/metrics").text):
        for s in fam.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            flat[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return flat


def _wait_idle(srv, timeout=30.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        m = _metrics(srv)
        if m["dspark_kv_pages_used"] == 0 and m["dspark_requests_running"] == 0:
            return m
        assert time.monotonic() < deadline, f"pages still held: {m['dspark_kv_pages_used']}"
        time.sleep(0.05)


PROMPTS = [[5, 17, 200, 3, 99], [42] * 9, [7, 8, 9], list(range(30, 50))]


def test_completion_greedy_equals_target_greedy(model, server):
    _, srv = server
    c = _client(srv)
    for p in PROMPTS[:2]:
        want, _ = _reference_text(model, p, 12)
        r = c.completions.create(
            model="tiny", prompt=p, max_tokens=12, temperature=0, extra_body={"ignore_eos": True}
        )
        assert r.choices[0].text == want
        assert r.choices[0].finish_reason == "length"
        assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (len(p), 12)


def test_streaming_concatenates_to_the_same_text_with_usage(model, server):
    _, srv = server
    want, _ = _reference_text(model, PROMPTS[0], 15)
    stream = _client(srv).completions.create(
        model="tiny",
        prompt=PROMPTS[0],
        max_tokens=15,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert text == want
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 15
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "length"


def test_chat_uses_the_chat_template(model, server):
    _, srv = server
    tok = model[2]
    msgs = [{"role": "user", "content": "hi there"}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    want, _ = _reference_text(model, ids, 10)
    c = _client(srv)
    r = c.chat.completions.create(
        model="tiny", messages=msgs, max_tokens=10, temperature=0, extra_body={"ignore_eos": True}
    )
    assert r.choices[0].message.content == want and r.choices[0].message.role == "assistant"
    stream = c.chat.completions.create(
        model="tiny",
        messages=msgs,
        max_tokens=10,
        temperature=0,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices) == want


def test_concurrent_greedy_requests_each_equal_their_own_greedy(model, server):
    _, srv = server
    c = _client(srv)
    results: dict[int, str] = {}

    def run(i: int) -> None:
        r = c.completions.create(
            model="tiny",
            prompt=PROMPTS[i % 4],
            max_tokens=8 + i,
            temperature=0,
            extra_body={"ignore_eos": True},
        )
        results[i] = r.choices[0].text

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for i in range(8):
        assert results[i] == _reference_text(model, PROMPTS[i % 4], 8 + i)[0]
    _wait_idle(srv)


def test_metrics_account_for_every_emitted_token(model, server):
    """Tokens = 1 (from the prefill) + one per verification step + the accepted drafts."""
    _, srv = server
    before = _metrics(srv)
    r = _client(srv).completions.create(
        model="tiny",
        prompt=PROMPTS[3],
        max_tokens=20,
        temperature=0,
        extra_body={"ignore_eos": True},
    )
    after = _wait_idle(srv)

    def diff(name):
        return after.get(name, 0.0) - before.get(name, 0.0)

    steps = diff("dspark_spec_verify_length_count")
    accepted = sum(diff(f"dspark_spec_accepted_tokens_total{{position={p}}}") for p in (1, 2, 3))
    drafted = [diff(f"dspark_spec_draft_tokens_total{{position={p}}}") for p in (1, 2, 3)]
    assert r.usage.completion_tokens == 20 == 1 + steps + accepted
    zero = diff("dspark_spec_verify_length_bucket{le=0.0}")  # steps that verified no draft
    assert drafted[0] == steps - zero and drafted[0] >= drafted[1] >= drafted[2]
    acc = [diff(f"dspark_spec_accepted_tokens_total{{position={p}}}") for p in (1, 2, 3)]
    # position p is tested only when p - 1 was accepted (and K reaches p): conditional counts
    assert (
        drafted[1] <= acc[0]
        and drafted[2] <= acc[1]
        and all(a <= d for a, d in zip(acc, drafted, strict=True))
    )
    assert diff("dspark_generation_tokens_total") == 20


def test_logprobs_are_the_targets(model, server):
    target = model[0]
    _, srv = server
    r = _client(srv).completions.create(
        model="tiny",
        prompt=PROMPTS[0],
        max_tokens=4,
        temperature=0,
        logprobs=1,
        extra_body={"ignore_eos": True},
    )
    _, ids = _reference_text(model, PROMPTS[0], 4)
    seq = torch.tensor([PROMPTS[0] + ids])
    with torch.no_grad():
        logp = torch.log_softmax(target(seq).logits[0].float(), -1)
    n = len(PROMPTS[0])
    want = [logp[n - 1 + i, t].item() for i, t in enumerate(ids)]
    got = r.choices[0].logprobs.token_logprobs
    assert got == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"prompt": "x", "temperature": "hot"}, "temperature", "valid number"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"prompt": "x", "max_tokens": MAX_LEN}, "max_tokens", "exceeds"),
        ({"prompt": [1] * MAX_LEN}, "prompt", "context"),
        ({"prompt": [1, 9999]}, "prompt", "token ids"),
        ({"prompt": "x", "n": 2}, "n", "less than or equal to 1"),
        ({"prompt": "x", "top_p": 0}, "top_p", "greater than 0"),
        ({"prompt": "x", "stop": [""]}, "stop", "non-empty"),
        ({}, "prompt", "Field required"),
    ],
)
def test_bad_requests_get_400_naming_the_field(server, body, param, words):
    _, srv = server
    r = httpx.post(srv.url + "/v1/completions", json={"model": "tiny", **body})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and words in err["message"], err


def test_malformed_json_and_unknown_model(server):
    _, srv = server
    r = httpx.post(
        srv.url + "/v1/completions",
        content=b'{"prompt": "x",',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError, match="serves 'tiny'"):
        _client(srv).completions.create(model="other", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        _client(srv).completions.create(model="tiny", prompt="x", temperature=-1)


def test_stop_strings_cut_the_text(model, server):
    _, srv = server
    full, _ = _reference_text(model, PROMPTS[1], 20)
    stop = full[5:7]
    cut = full[: full.index(stop)]
    c = _client(srv)
    kw = {"model": "tiny", "prompt": PROMPTS[1], "max_tokens": 80, "temperature": 0}
    r = c.completions.create(stop=[stop], extra_body={"ignore_eos": True}, **kw)
    assert (r.choices[0].text, r.choices[0].finish_reason) == (cut, "stop")
    before = _metrics(srv)
    s = c.completions.create(stop=stop, stream=True, extra_body={"ignore_eos": True}, **kw)
    assert "".join(ch.choices[0].text for ch in s if ch.choices) == cut
    after = _wait_idle(srv)
    key = "dspark_requests_total{finish_reason=stop}"
    assert after[key] == before.get(key, 0.0) + 1  # recorded as a stop, not an abort


def test_client_disconnect_aborts_and_frees_pages(server):
    _, srv = server
    before = _metrics(srv).get("dspark_requests_total{finish_reason=abort}", 0.0)
    body = {
        "model": "tiny",
        "prompt": [3, 4, 5],
        "max_tokens": 80,
        "stream": True,
        "ignore_eos": True,
        "temperature": 1.0,
    }
    with httpx.stream("POST", srv.url + "/v1/completions", json=body, timeout=30) as r:
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
    m = _wait_idle(srv)
    assert m["dspark_requests_total{finish_reason=abort}"] == before + 1


def test_speculation_endpoint_switches_modes(server):
    eng, srv = server
    url = srv.url + "/v1/dspark/speculation"
    assert httpx.get(url).json() == {"mode": "fixed", "k": 3, "max_k": 3}
    assert httpx.put(url, json={"mode": "fixed", "k": 9}).status_code == 400
    try:
        assert httpx.put(url, json={"mode": "none"}).json()["mode"] == "none"
        r = _client(srv).completions.create(model="tiny", prompt=[1, 2], max_tokens=3)
        assert r.usage.completion_tokens == 3
        got = httpx.put(url, json={"mode": "scheduler"}).json()
        assert got["mode"] == "scheduler" and eng.monitor is not None
    finally:
        assert httpx.put(url, json={"mode": "fixed", "k": 3}).status_code == 200


def test_health_and_models(server):
    _, srv = server
    assert httpx.get(srv.url + "/health").json() == {"status": "ok"}
    models = _client(srv).models.list().data
    assert [m.id for m in models] == ["tiny"]


def test_queue_full_gets_503(model):
    _, srv = _server(model, max_num_seqs=1, max_queue=0)
    body = {"model": "tiny", "prompt": [3, 4], "max_tokens": 5, "ignore_eos": True}
    with srv:
        gate = threading.Event()
        srv.server.config.app.state.engine._post(lambda: gate.wait(30))  # the engine stalls
        first: list[httpx.Response] = []
        t = threading.Thread(
            target=lambda: first.append(httpx.post(srv.url + "/v1/completions", json=body))
        )
        t.start()
        deadline = time.monotonic() + 10
        while srv.server.config.app.state.engine.num_in_flight == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second = httpx.post(srv.url + "/v1/completions", json=body)
        gate.set()
        t.join(30)
        assert second.status_code == 503 and "retry later" in second.json()["error"]["message"]
        assert first[0].status_code == 200
        third = httpx.post(srv.url + "/v1/completions", json=body)  # room again
        assert third.status_code == 200


def test_shutdown_drains_running_requests(model):
    """A request in flight when shutdown starts still completes; then every page is free."""
    eng, srv = _server(model)
    body = {"model": "tiny", "prompt": [3, 4], "max_tokens": 40, "stream": True, "ignore_eos": True}
    srv.start()
    aeng = srv.server.config.app.state.engine
    gate = threading.Event()
    aeng._post(lambda: gate.wait(30))  # hold the engine so the request is surely in flight
    got: list[str] = []

    def client() -> None:
        with httpx.stream("POST", srv.url + "/v1/completions", json=body, timeout=60) as r:
            got.extend(line for line in r.iter_lines() if line.startswith("data:"))

    t = threading.Thread(target=client)
    t.start()
    deadline = time.monotonic() + 10
    while aeng.num_in_flight == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    time.sleep(0.3)  # shutdown has begun: no new connections
    with pytest.raises(httpx.TransportError):
        httpx.get(srv.url + "/health", timeout=2)
    gate.set()
    t.join(60)
    stopper.join(60)
    assert got[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in got[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    assert eng.num_free_pages == eng.runner.cache.num_pages and not srv.thread.is_alive()
