"""PII analyzer latency per short message: sovhub's analyzer vs plain Presidio, side by side.

    .venv/bin/python bench/pii_bench.py [--rounds 20] [--runs 3]     # writes bench/results/pii.json

"plain Presidio" is Presidio's AnalyzerEngine with its own predefined pattern recognizers and
no NLP model (the default engine would need a spaCy model download; NER is not what is compared
here). Both analyse the same messages, interleaved, in one process. sovhub's numbers are given
for detection alone and for detection + pseudonymisation (what the chat pipeline runs).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

from procs import machine_info, write_result

MESSAGES = [
    "Hi, can you help me write a cover letter for a nursing job?",
    "What's the weather usually like in Lviv in October?",
    "My IBAN is DE89 3704 0044 0532 0130 00, please draft the transfer request.",
    "Please email the invoice to jan.kowalski@example.pl by Friday.",
    "Call me on +48 601 234 567 after six.",
    "Mój PESEL to 44051401359, czy formularz jest poprawny?",
    "Мій РНОКПП 1759013776, як подати декларацію?",
    "Meine Steuer-ID ist 36 574 261 809, wo trage ich sie ein?",
    "Mon numéro de sécurité sociale est 2 95 10 99 126 111 93.",
    "Mi DNI es 12345678Z y mi NIE anterior X1234567L.",
    "My Aadhaar is 2341 2341 2346, is it needed for the bank?",
    "The card 4111 1111 1111 1111 was charged twice.",
    "SSN 536-22-1234 appears on the W-2 form.",
    "Wie viele Einwohner hat Hamburg im Jahr 2024?",
    "Explique-moi la photosynthèse simplement.",
    "¿Cuál es la capital de Australia?",
    "Jak ugotować pierogi ruskie?",
    "Як перекласти це речення англійською?",
    "ما هي عاصمة المغرب؟",
    "東京から大阪まで新幹線でどのくらいかかりますか。",
    "電話は+81 3-1234-5678です。",
    "Order 55123 shipped on 2024-05-01 with 3 items.",
]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return p50 * 1000, p99 * 1000


def _plain_presidio() -> Callable[[str], object]:
    import tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    # Presidio's e-mail recognizer calls tldextract, which would fetch the public suffix list:
    # use the snapshot bundled with tldextract instead (nothing is downloaded).
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    engine_nlp = NoOpNlpEngine([{"lang_code": "en", "model_name": "none"}])
    engine_nlp.load()
    # The default registry: every predefined recognizer Presidio enables for English.
    engine = AnalyzerEngine(nlp_engine=engine_nlp, supported_languages=["en"])
    return lambda text: engine.analyze(text, "en")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="times each message is analysed per engine")
    parser.add_argument("--runs", type=int, default=3, help="runs; the table gives the median of their percentiles")
    parser.add_argument("--name", default="pii", help="result file name under bench/results/")
    args = parser.parse_args()
    info = machine_info()

    from sovhub.safety.pii import PiiAnalyzer, Redactor, Vault

    t0 = time.perf_counter()
    ours = PiiAnalyzer()
    build_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain = _plain_presidio()
    build_plain = time.perf_counter() - t0
    redactor = Redactor(b"bench-key")

    def pipeline(text: str) -> str:
        return redactor.redact(text, ours.analyze(text), "pseudonymize", Vault())

    engines: dict[str, Callable[[str], object]] = {
        "sovhub PiiAnalyzer (detect)": ours.analyze,
        "sovhub detect + pseudonymize": pipeline,
        "plain Presidio, predefined pattern recognizers": plain,
    }
    for fn in engines.values():  # warm-up: regex compilation, lazy loads
        for m in MESSAGES:
            fn(m)
    per_run: dict[str, list[dict[str, float]]] = {name: [] for name in engines}
    for _ in range(args.runs):
        samples: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(args.rounds):
            for m in MESSAGES:
                for name, fn in engines.items():
                    start = time.perf_counter()
                    fn(m)
                    samples[name].append(time.perf_counter() - start)
        for name, values in samples.items():
            p50, p99 = _percentiles(values)
            per_run[name].append({"p50_ms": round(p50, 3), "p99_ms": round(p99, 3)})

    print(f"machine: {platform.machine()} {platform.processor() or ''}, python {platform.python_version()}, "
          f"load average {info['loadavg_1m_at_start']} at the start")
    print(f"messages: {len(MESSAGES)} short messages (8 languages, 12 with PII) x {args.rounds} rounds x "
          f"{args.runs} runs (medians of the runs' percentiles)")
    print(f"build time: sovhub {build_ours * 1000:.1f} ms, plain Presidio {build_plain * 1000:.1f} ms")
    print()
    print("| engine | p50 ms | p99 ms | p99 of each run |")
    print("|---|---|---|---|")
    engines_out = {}
    for name, runs in per_run.items():
        p50 = statistics.median(r["p50_ms"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)
        engines_out[name] = {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
                             "samples_per_run": args.rounds * len(MESSAGES), "runs": runs}
        each = ", ".join(f"{r['p99_ms']:.2f}" for r in runs)
        print(f"| {name} | {p50:.3f} | {p99:.3f} | {each} |")
    plain_name = "plain Presidio, predefined pattern recognizers"
    # Per run, interleaved message by message: both engines saw the same load, so the ratio carries over.
    ratio_p50 = statistics.median(p["p50_ms"] / o["p50_ms"] for p, o in
                                  zip(per_run[plain_name], per_run["sovhub PiiAnalyzer (detect)"], strict=True))
    print(f"\nplain Presidio / sovhub detect, p50 (median of the runs' ratios): {ratio_p50:.2f}x")
    out = write_result(args.name, {
        "benchmark": "PII analyzer per short message, sovhub vs plain Presidio, interleaved in one process",
        "machine": info, "config": {"rounds": args.rounds, "runs": args.runs, "messages": len(MESSAGES)},
        "build_ms": {"sovhub": round(build_ours * 1000, 1), "plain_presidio": round(build_plain * 1000, 1)},
        "engines": engines_out, "presidio_over_sovhub_p50": round(ratio_p50, 2),
    })
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
