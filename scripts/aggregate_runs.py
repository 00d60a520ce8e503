#!/usr/bin/env python3
"""Summarise several scored runs of examples/audio_quality/ as one table.

usage: python3 scripts/aggregate_runs.py RUN1.json RUN2.json ...

Each RUN.json is the example's --json output after
`scripts/score_pesq.py RUN.json --write` added the MOS-LQO scores. Prints a
markdown table with, per condition, the median MOS-LQO and mean
jitter-buffer delay over the runs (with their range), the delay against the
goal (p95 jitter + 20 ms), and the jitter buffer's FEC, concealment and
time-stretch counts per run. Standard library only.
"""
import json
import statistics
import sys


def main() -> None:
    paths = sys.argv[1:]
    if not paths:
        sys.exit(__doc__)
    runs = [json.load(open(p)) for p in paths]
    codec = [r.get("codec_only_mos_lqo") for r in runs]
    codec = [c for c in codec if c is not None]
    if codec:
        print(f"codec only (no network, no jitter buffer): MOS-LQO {statistics.median(codec):.2f}\n")
    print(
        "| condition | MOS-LQO | JB mean delay (ms) | p95 jitter (ms) | goal: delay <= | met | "
        "FEC-recovered | concealed | accelerate / preemptive expand |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for cond in runs[0]["conditions"]:
        name = cond["name"]
        rows = [c for r in runs for c in r["conditions"] if c["name"] == name]
        mos = [c["mos_lqo"] for c in rows if "mos_lqo" in c]
        delay = [c["jb_mean_delay_ms"] for c in rows]
        p95 = rows[0]["jitter_p95_ms"]
        goal = p95 + 20.0
        met = sum(d <= goal for d in delay)

        def span(xs, fmt):
            if not xs:
                return "-"
            m = statistics.median(xs)
            if len(xs) == 1:
                return format(m, fmt)
            return f"{format(m, fmt)} ({format(min(xs), fmt)}-{format(max(xs), fmt)})"

        def per_run(key):
            return " / ".join(str(c["jb"][key]) for c in rows)

        stretch = " / ".join(
            f"{c['jb']['accelerated_frames']}+{c['jb']['preemptive_expanded_frames']}" for c in rows
        )
        print(
            f"| {name} | {span(mos, '.2f')} | {span(delay, '.1f')} | {p95:.1f} | {goal:.1f} | "
            f"{met} of {len(delay)} | {per_run('fec_recovered_frames')} | "
            f"{per_run('concealed_frames')} | {stretch} |"
        )


if __name__ == "__main__":
    main()
