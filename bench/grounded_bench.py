"""Grounded-answer evaluation in the 8 languages, on the default box (bundled model, real embeddings).

    PYTHONPATH=src .venv/bin/python bench/grounded_bench.py            # writes bench/results/grounded.json
    PYTHONPATH=src .venv/bin/python bench/grounded_bench.py --calibrate  # similarity of the best passage only

Each locale's collection (`default_collection` of its pack) gets one national document
(bench/data/grounded_eval.json); a person whose interface is in that language asks three
questions the document answers and three it does not, through the real web app (sign-in, CSRF,
the streaming endpoint). Counted per language:

- answerable: the answer holds the fact (its number), cites a passage of the locale's
  collection, and is written in the person's language (lingua, the deployment's languages);
- unanswerable: the answer cites nothing; and, separately, is the translated "I do not know";
- wrong language: any answer whose detected language is another one.

`--calibrate` prints, for every question, the cosine similarity of the best passage among the
searched collections: the relevance floor (assistant.kb_min_similarity) sits between the
answerable and the unanswerable questions' values.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fastapi.testclient import TestClient  # noqa: E402
from procs import machine_info  # noqa: E402

from sovhub.app import create_app  # noqa: E402
from sovhub.assistant.fidelity import detector_for  # noqa: E402
from sovhub.assistant.grounding import dont_know, quoted_label, searched_collections  # noqa: E402
from sovhub.assistant.knowledge import KnowledgeBase  # noqa: E402
from sovhub.assistant.locales import LocaleRegistry  # noqa: E402
from sovhub.assistant.people import create_user  # noqa: E402
from sovhub.hub import Hub, build_hub  # noqa: E402
from sovhub.settings import load_settings  # noqa: E402

DATA = ROOT / "bench" / "data" / "grounded_eval.json"
PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_MARKS = re.compile(r"\[\d+\]|^>\s*", re.M)


def load_eval() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))["locales"]
    return data


def build(data_dir: Path) -> Hub:
    # The safety pipeline is left out: it is measured in safety_bench.py, and its warm-up takes minutes here.
    settings = load_settings(data_dir=str(data_dir), safety={"enabled": False})
    hub = build_hub(settings)
    kb = hub.services.get(KnowledgeBase)
    registry = hub.services.get(LocaleRegistry)
    for code, item in load_eval().items():
        kb.ingest_bytes(f"{code}.md", item["document"].encode(), registry.get(code).default_collection)
    return hub


def calibrate(hub: Hub) -> list[dict[str, Any]]:
    kb = hub.services.get(KnowledgeBase)
    registry = hub.services.get(LocaleRegistry)
    rows = []
    for code, item in load_eval().items():
        searched = searched_collections(hub, registry.get(code))
        answerable = [q for q, _ in item["answerable"]]
        for kind, questions in (("answerable", answerable), ("unanswerable", item["unanswerable"])):
            for question in questions:
                hits = kb.search(question, k=4, collections=searched)
                best = max((h.similarity or 0.0 for h in hits), default=0.0)
                rows.append({"locale": code, "kind": kind, "question": question, "best_similarity": round(best, 4)})
    return rows


def _events(body: str) -> list[tuple[str, Any]]:
    out = []
    for block in body.split("\n\n"):
        name = re.search(r"^event: (.+)$", block, re.M)
        data = re.search(r"^data: (.+)$", block, re.M)
        if name and data:
            out.append((name.group(1), json.loads(data.group(1))))
    return out


def ask(client: TestClient, question: str) -> dict[str, Any]:
    token = _CSRF.search(client.get("/").text)
    assert token, "no CSRF token"
    response = client.post("/c", data={"content": question, "csrf_token": token.group(1)},
                           headers={"accept": "text/event-stream"})
    events = _events(response.text)
    done = next((d for n, d in events if n == "done"), None)
    error = next((d for n, d in events if n == "error"), None)
    text = "".join(d["text"] for n, d in events if n == "delta")
    return {"text": text, "citations": (done or {}).get("citations") or [], "error": error}


def evaluate(hub: Hub) -> dict[str, Any]:
    languages = hub.settings.assistant.languages
    detector = detector_for(languages)
    registry = hub.services.get(LocaleRegistry)
    create_user(hub, "eval@example.org", PASSWORD, display_name="Eval")
    per_language: dict[str, Any] = {}
    answers: list[dict[str, Any]] = []
    with TestClient(create_app(hub), base_url="http://testserver") as client:
        token = _CSRF.search(client.get("/login").text)
        assert token
        client.post("/login", data={"email": "eval@example.org", "password": PASSWORD,
                                    "csrf_token": token.group(1), "next": "/"}, follow_redirects=False)
        for code, item in load_eval().items():
            pack = registry.get(code)
            lang, own = pack.language, pack.default_collection
            token = _CSRF.search(client.get("/").text)
            assert token
            client.post("/lang", data={"lang": lang, "csrf_token": token.group(1), "next": "/"},
                        follow_redirects=False)
            counts = {"answerable": 0, "answered": 0, "unanswerable": 0, "cited_nothing": 0, "dont_know": 0,
                      "wrong_language": 0, "errors": 0, "seconds": 0.0}
            for kind, questions in (("answerable", item["answerable"]), ("unanswerable",
                                    [[q, None] for q in item["unanswerable"]])):
                for question, fact in questions:
                    started = time.perf_counter()
                    got = ask(client, question)
                    counts["seconds"] += time.perf_counter() - started
                    plain = _MARKS.sub("", got["text"].replace(quoted_label(lang), "")).strip()
                    detected = detector.detect(plain)
                    wrong = detected is not None and detected != lang
                    counts["wrong_language"] += wrong
                    counts["errors"] += got["error"] is not None
                    counts[kind] += 1
                    if kind == "answerable":
                        ok = (fact in got["text"] and not wrong and detected == lang
                              and any(c["collection"] == own for c in got["citations"]))
                        counts["answered"] += ok
                    else:
                        ok = not got["citations"]
                        counts["cited_nothing"] += ok
                        counts["dont_know"] += got["text"].strip() == dont_know(lang)
                    answers.append({"locale": code, "kind": kind, "question": question, "ok": ok,
                                    "detected": detected, "answer": got["text"][:400],
                                    "cited": [c["collection"] for c in got["citations"]]})
            counts["seconds"] = round(counts["seconds"], 1)
            per_language[code] = counts
    total = {k: sum(v[k] for v in per_language.values()) for k in
             ("answerable", "answered", "unanswerable", "cited_nothing", "dont_know", "wrong_language", "errors")}
    return {"per_language": per_language, "total": total, "answers": answers,
            "model": hub.settings.embedded_model_id, "min_similarity": hub.settings.assistant.kb_min_similarity}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "grounded.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hub = build(Path(tmp))
        try:
            if args.calibrate:
                for row in calibrate(hub):
                    print(json.dumps(row, ensure_ascii=False))  # noqa: T201
                return
            result = {"benchmark": "grounded answers in 8 languages", "machine": machine_info(), **evaluate(hub)}
        finally:
            hub.close()
    Path(args.out).write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result["total"]), json.dumps({k: v for k, v in result["per_language"].items()}))  # noqa: T201


if __name__ == "__main__":
    main()
