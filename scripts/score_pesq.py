#!/usr/bin/env python3
"""Score the outputs of examples/audio_quality/ with PESQ wideband (ITU-T P.862.2).

usage: python3 scripts/score_pesq.py RESULTS.json [--ref REF.wav] [--write]
       python3 scripts/score_pesq.py --ref REF.wav DEGRADED.wav [DEGRADED.wav ...]

With RESULTS.json (written by `audio_quality --json`), each condition's output
WAV is scored against the JSON's reference (the input as sent, 48 kHz mono;
--ref overrides it) and a Markdown table with MOS-LQO and the jitter-buffer
figures is printed; --write also stores `mos_lqo` and `align_ms` per condition
back into the JSON. With WAV files instead, each is scored and printed.

Both signals are mixed to mono and resampled to 16 kHz (wideband PESQ), then the
degraded one is shifted to the lag that maximises its cross-correlation with the
reference (searched within +-500 ms) and cut or zero-padded to the reference's
length. Install: pip install -r scripts/requirements.txt
"""
import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import soundfile
from pesq import pesq
from scipy.signal import correlate, resample_poly

RATE = 16_000  # PESQ wideband works on 16 kHz audio
MAX_LAG_S = 0.5


def load_16k(path):
    """A WAV file as float mono at 16 kHz."""
    x, rate = soundfile.read(path, dtype="float64", always_2d=True)
    x = x.mean(axis=1)
    g = math.gcd(RATE, rate)
    return resample_poly(x, RATE // g, rate // g)


def align(ref, deg):
    """`deg` shifted onto `ref` by the cross-correlation peak, same length; and the lag (samples)."""
    corr = correlate(deg, ref, mode="full", method="fft")
    lags = np.arange(-len(ref) + 1, len(deg))
    window = np.abs(lags) <= MAX_LAG_S * RATE
    lag = int(lags[window][np.argmax(corr[window])])
    if lag >= 0:
        shifted = deg[lag:]
    else:
        shifted = np.concatenate([np.zeros(-lag), deg])
    out = np.zeros(len(ref))
    n = min(len(ref), len(shifted))
    out[:n] = shifted[:n]
    return out, lag


def score(ref, deg_path):
    """(MOS-LQO, alignment shift in ms) of one degraded file."""
    deg, lag = align(ref, load_16k(deg_path))
    return float(pesq(RATE, ref, deg, "wb")), 1000.0 * lag / RATE


def table(conditions):
    lines = [
        "| condition | MOS-LQO (PESQ-WB) | network lost / sent | p95 jitter (ms) "
        "| JB mean delay (ms) | delay - p95 (ms) | RED-recovered | FEC-recovered | concealed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in conditions:
        jb = c["jb"]
        lines.append(
            f"| {c['name']} | {c.get('mos_lqo', float('nan')):.2f} "
            f"| {c['relay_lost']} / {c['relay_offered']} | {c['jitter_p95_ms']:.1f} "
            f"| {c['jb_mean_delay_ms']:.1f} | {c['delay_over_p95_ms']:+.1f} "
            f"| {jb.get('red_recovered_frames', 0)} "
            f"| {jb['fec_recovered_frames']} | {jb['concealed_frames']} |"
        )
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="RESULTS.json, or degraded WAV files with --ref")
    ap.add_argument("--ref", help="reference WAV (default: the JSON's `reference`)")
    ap.add_argument("--write", action="store_true", help="store the scores back into RESULTS.json")
    args = ap.parse_args()

    if args.files[0].endswith(".json"):
        path = Path(args.files[0])
        results = json.loads(path.read_text())
        ref = load_16k(args.ref or results["reference"])
        for c in results["conditions"]:
            c["mos_lqo"], c["align_ms"] = score(ref, c["output"])
            print(f"{c['name']:>16}: MOS-LQO {c['mos_lqo']:.2f} (shifted {c['align_ms']:+.1f} ms)",
                  file=sys.stderr)
        if results.get("codec_only"):
            results["codec_only_mos_lqo"], _ = score(ref, results["codec_only"])
            print(f"      codec only: MOS-LQO {results['codec_only_mos_lqo']:.2f} "
                  "(Opus encode+decode, no network, no jitter buffer)", file=sys.stderr)
        print(table(results["conditions"]))
        if args.write:
            path.write_text(json.dumps(results, indent=2) + "\n")
    else:
        if not args.ref:
            ap.error("--ref is needed when scoring WAV files")
        ref = load_16k(args.ref)
        for f in args.files:
            mos, shift = score(ref, f)
            print(f"{f}: MOS-LQO {mos:.2f} (shifted {shift:+.1f} ms)")


if __name__ == "__main__":
    main()
