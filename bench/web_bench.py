"""Web assistant pages: server time of the chat page (p50/p95/p99) and page weight without the model.

In process: the real app (lifespan started, the bundled model registered so the model picker is
real, safety off), a signed-in person with a conversation of `--turns` question/answer pairs,
encrypted at rest as in production. Each request is timed around the full ASGI round trip of
Starlette's TestClient (session cookie check, one user read, conversation list and messages
decrypted, Markdown rendered, template rendered), so the figure is an upper bound of the
server's own time. CPU time per request (the whole process: client and server) and the load
average are recorded too, since on a shared machine the wall time mostly measures waiting for a
core. Page weight is the bytes a first visit downloads besides the model: the chat
page's HTML, app.css and app.js (raw and gzip -9, as a compressing proxy would send them).

    .venv/bin/python bench/web_bench.py --requests 300 --runs 3   # writes bench/results/web.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run(requests: int, turns: int, lang: str) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from sovhub.app import create_app
    from sovhub.assistant.answer_html import render_markdown
    from sovhub.assistant.chat_store import ChatStore
    from sovhub.assistant.people import create_user
    from sovhub.hub import build_hub
    from sovhub.settings import load_settings

    data_dir = Path(tempfile.mkdtemp(prefix="sovhub-webbench-"))
    hub = build_hub(load_settings(data_dir=str(data_dir), safety={"enabled": False}, embeddings_enabled=False))
    hub.pm.hook.sovhub_init(hub=hub)
    user_id = create_user(hub, "bench@example.org", "bench password 1")
    store = ChatStore(hub)
    answer = ("To renew a **passport**, book an appointment at the migration office.\n\n"
              "1. Bring your old passport\n2. A photo\n3. The fee receipt\n\nIt takes about 20 working days. ")
    conversation_id = ""
    for c in range(10):
        conversation_id = store.create(user_id, f"Question {c} about public services", "smollm2-135m-instruct")
        for t in range(turns if c == 9 else 2):
            store.append(user_id, conversation_id, "user", f"How do I renew my passport? ({t})")
            # As run_turn saves answers: with their sanitised HTML rendered once.
            store.append(user_id, conversation_id, "assistant", answer * 3, model="smollm2-135m-instruct",
                         html=render_markdown(answer * 3),
                         citations=[{"n": 1, "url": "/kb/chunks/1", "title": "Passport guide", "page": 2}])
    with TestClient(create_app(hub), base_url="http://127.0.0.1") as client:
        login = client.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)  # type: ignore[union-attr]
        client.post("/login", data={"email": "bench@example.org", "password": "bench password 1",
                                    "csrf_token": token}, follow_redirects=False)
        headers = {"accept-language": lang}
        path = f"/c/{conversation_id}"
        for _ in range(20):  # warm: templates compiled, data key cached, catalogs loaded
            assert client.get(path, headers=headers).status_code == 200
        times, cpu = [], []
        load_before = os.getloadavg()
        for _ in range(requests):
            c0, t0 = time.process_time(), time.perf_counter()
            response = client.get(path, headers=headers)
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            assert response.status_code == 200
        load_after = os.getloadavg()
        html = client.get(path, headers=headers).content
        new_chat = client.get("/", headers=headers).content
        css = client.get("/static/app.css").content
        js = client.get("/static/app.js").content
    hub.close()

    def weight(parts: list[bytes]) -> dict[str, int]:
        return {"raw": sum(len(p) for p in parts), "gzip": sum(len(gzip.compress(p, 9)) for p in parts)}

    return {
        "requests": requests, "turns_in_conversation": turns, "lang": lang,
        "server_ms": {"p50": round(statistics.median(times), 2), "p95": round(_percentile(times, 0.95), 2),
                      "p99": round(_percentile(times, 0.99), 2), "max": round(max(times), 2)},
        "cpu_ms": {"p50": round(statistics.median(cpu), 2), "p95": round(_percentile(cpu, 0.95), 2)},
        "load_average_1m": {"before": round(load_before[0], 2), "after": round(load_after[0], 2),
                            "cores": os.cpu_count()},
        "page_weight_bytes": {
            "conversation_page": weight([html, css, js]), "new_chat_page": weight([new_chat, css, js]),
            "html": len(html), "css": len(css), "js": len(js),
        },
        "targets": {"server_p95_ms": 50, "page_weight_bytes": 200 * 1024},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--turns", type=int, default=20, help="question/answer pairs in the timed conversation")
    parser.add_argument("--lang", default="uk", help="Accept-Language of the requests")
    parser.add_argument("--runs", type=int, default=3, help="runs, each in a fresh hub; medians are reported")
    parser.add_argument("--output", default="bench/results/web.json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from procs import machine_info

    info = machine_info()
    runs = [run(args.requests, args.turns, args.lang) for _ in range(args.runs)]

    def median_of(key: str) -> dict[str, float]:
        return {q: round(statistics.median(r[key][q] for r in runs), 2) for q in runs[0][key]}

    result = {
        "machine": info,
        "config": {"requests": args.requests, "turns": args.turns, "lang": args.lang, "runs": args.runs},
        **runs[-1],
        # The medians over runs of each run's percentiles; each run's own figures below.
        "server_ms": median_of("server_ms"),
        "cpu_ms": median_of("cpu_ms"),
        "load_average_1m": {"before": runs[0]["load_average_1m"]["before"],
                            "after": runs[-1]["load_average_1m"]["after"], "cores": os.cpu_count()},
        "runs": [{k: r[k] for k in ("server_ms", "cpu_ms", "load_average_1m")} for r in runs],
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    ok = result["server_ms"]["p95"] < 50 and result["page_weight_bytes"]["conversation_page"]["raw"] < 200 * 1024
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
