"""Markdown tables, ratios and the issue-9 goal checks of bench/peer_bench.py's results."""
import os
import platform
import subprocess

from peer_engines import REPO

TITAND_MAIN = "titand-tptt"  # the product: SmolLM2 + the bundled TPTT adapter


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"cpu": cpu, "cpus": os.cpu_count(), "mem_gib": round(mem_kib / 2**20, 1),
            "kernel": platform.release(), "titand_commit": commit, "load_end": os.getloadavg()}


def _f(x, nd=1):
    return "-" if x is None else f"{x:,.{nd}f}"


def _mib(kib):
    return "-" if not kib else f"{kib / 1024:,.0f}"


def _ttft(res, mode, h):
    for row in res.get("returning", []):
        if row["mode"] == mode and row["history_tokens"] == h:
            return row
    return None


def _modes(results):
    """(row label, engine name, mode) of every returning-turn measurement."""
    label = {"session": "session (new turn only)", "cache": "cache_prompt, same slot",
             "nocache": "no cache (re-prefill)", "reprefill": "re-prefill", "past_kv": "past_key_values kept"}
    rows = []
    for name, res in results.items():
        for mode in dict.fromkeys(r["mode"] for r in res.get("returning", [])):
            rows.append((f"{name}: {label.get(mode, mode)}", name, mode))
    return rows


def _ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def markdown(summary):
    res, s, m = summary["results"], summary["settings"], summary["machine"]
    hs = s["history_list"]
    out = [f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['mem_gib']} GiB; titand {m['titand_commit']}; "
           f"{summary['date']}; load (1/5/15 min) at the end {', '.join(f'{x:.1f}' for x in m['load_end'])}.",
           f"Command: `{summary['command']}`; {s['threads']} threads everywhere; greedy, EOS ignored.", ""]
    if summary.get("titand_binary"):
        b = summary["titand_binary"]
        out[-1:-1] = [f"titand binary: `{b['path']}`, built {b['built']} (the commit above is the checkout's)."]
    for name, why in summary.get("skipped", {}).items():
        out += [f"**{name} skipped**: {why}.", ""]
    for name, why in summary.get("failed", {}).items():
        out += [f"**{name} FAILED** (its rows are missing): {why}", ""]
    out += [f"| engine | prefill tok/s ({s['prefill']}-token prompt) | decode tok/s ({s['decode']} new) | "
            f"{s['streams']} streams, aggregate decode tok/s | peak RSS MiB | load at start |",
            "|---|---|---|---|---|---|"]
    for name, r in res.items():
        rss = _mib(r.get("peak_rss_kib"))
        if r.get("aggregate_peak_rss_kib"):
            rss += f" (-np {s['streams']}: {_mib(r['aggregate_peak_rss_kib'])})"
        out.append(f"| {name} | {_f(r.get('single', {}).get('prefill_tps'))} | "
                   f"{_f(r.get('single', {}).get('decode_tps'))} | {_f(r.get('aggregate', {}).get('decode_tps'))} | "
                   f"{rss} | {r['load_before'][0]:.1f} |")
    out += ["", f"Returning-session time to first token (ms) of a {s['turn']}-token turn, by history length; "
            f"decode tok/s of that turn ({s['turn_tokens']} new) at the longest history:", "",
            "| engine: mode | " + " | ".join(f"{h:,}" for h in hs) + f" | decode tok/s at {hs[-1]:,} |",
            "|---|" + "---|" * (len(hs) + 1)]
    for label, name, mode in _modes(res):
        cells = [_ttft(res[name], mode, h) for h in hs]
        out.append(f"| {label} | " + " | ".join(_f(c and c["ttft_s"] * 1000, 0) for c in cells)
                   + f" | {_f(cells[-1] and cells[-1]['decode_tps'])} |")
    out += ["", *ratios(res, hs, s), "", *goals(res, hs), "", *agreement(res)]
    return "\n".join(out) + "\n"


def ratios(res, hs, s):
    peers = [(n, m) for n, m in (("llama.cpp", ("cache", "nocache")), ("transformers", ("past_kv", "reprefill")))
             if n in res]
    rows = [f"Ratios: throughput = titand / peer (above 1: titand faster); TTFT = peer / titand (how many "
            f"times sooner titand's first token comes; hit = llama.cpp's prompt-cache hit or Transformers' kept "
            f"past_key_values, re-prefill = the whole conversation prefilled again).", "",
            "| titand vs peer | prefill | decode | aggregate | " +
            " | ".join(f"TTFT {h:,} ({m})" for h in hs for m in ("hit", "re-prefill")) + " |",
            "|---|---|---|---|" + "---|" * (2 * len(hs))]
    for t in (n for n in res if n.startswith("titand")):
        for p, modes in peers:
            cells = [_ratio(res[t].get(k, {}).get("decode_tps" if k != "single" else x),
                            res[p].get(k, {}).get("decode_tps" if k != "single" else x))
                     for k, x in (("single", "prefill_tps"), ("single", "decode_tps"), ("aggregate", None))]
            for h in hs:
                mine = _ttft(res[t], "session", h)
                for mode in modes:
                    theirs = _ttft(res[p], mode, h)
                    cells.append(_ratio(theirs and theirs["ttft_s"], mine and mine["ttft_s"]))
            rows.append(f"| {t} / {p} | " + " | ".join(cells) + " |")
    return rows


def goals(res, hs):
    """The issue-9 goals that these results decide, each met or not (or why it cannot be said)."""
    t, llama = res.get(TITAND_MAIN) or res.get("titand-base"), res.get("llama.cpp")
    if not t or not llama:
        return ["Goals vs llama.cpp: not evaluated (llama.cpp or titand not run)."]
    h = hs[-1]
    note = f" (at {h:,} tokens of history)" if h >= 8000 else f" (at {h:,} tokens: the run did not reach 8K)"
    out = [f"Goals ({t['engine']}):"]
    best = max((r for n, r in res.items() if n.startswith("titand")), key=lambda r: r["single"]["decode_tps"] or 0)
    d, ld = best["single"]["decode_tps"], llama["single"]["decode_tps"]
    out.append(f"- single-stream decode >= llama.cpp: {'MET' if d and ld and d >= ld else 'NOT met'} "
               f"({best['engine']} {_f(d)} vs {_f(ld)} tok/s, {_ratio(d, ld)})")
    mine, hit, full = _ttft(t, "session", h), _ttft(llama, "cache", h), _ttft(llama, "nocache", h)
    if mine and hit:
        a, b = mine["decode_tps"], hit["decode_tps"]
        out.append(f"- moonshot, decode at the longest history >= 1.5x llama.cpp{note}: "
                   f"{'MET' if a and b and a >= 1.5 * b else 'NOT met'} ({_f(a)} vs {_f(b)} tok/s, {_ratio(a, b)})")
    if mine and full:
        r = full["ttft_s"] / mine["ttft_s"]
        out.append(f"- returning-session TTFT >= 10x faster than llama.cpp's re-prefill{note}: "
                   f"{'MET' if r >= 10 else 'NOT met'} ({mine['ttft_s'] * 1000:.0f} vs {full['ttft_s'] * 1000:.0f} ms, "
                   f"{r:.1f}x)")
    if mine and hit:
        r = hit["ttft_s"] / mine["ttft_s"]
        out.append(f"- returning-session TTFT faster than llama.cpp's prompt-cache hit{note}: "
                   f"{'MET' if r > 1 else 'NOT met'} ({mine['ttft_s'] * 1000:.0f} vs {hit['ttft_s'] * 1000:.0f} ms, "
                   f"{r:.2f}x)")
    return out


def agreement(res):
    """The first greedy ids of the first single-stream run, per engine: the same prompt must give the same
    ids where the arithmetic is the same (titand-base and Transformers both run the dequantised float32
    weights; llama.cpp runs Q4_1 blocks and the TPTT model is a different model)."""
    ids = {n: r["single"]["runs"][0]["ids"] for n, r in res.items() if r.get("single")}
    out = ["First greedy ids of the first single-stream prompt (same prompt for all):"]
    out += [f"- {n}: {' '.join(map(str, v))}" for n, v in ids.items()]
    if "titand-base" in ids and "transformers" in ids:
        same = ids["titand-base"] == ids["transformers"]
        out.append(f"- titand-base {'matches' if same else 'DIFFERS from'} Transformers (both float32 from the GGUF)")
    return out
