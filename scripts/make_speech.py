#!/usr/bin/env python3
"""Make the speech inputs for examples/audio_quality/.

usage: python3 scripts/make_speech.py [OUT.wav]            (default: speech.wav)
       python3 scripts/make_speech.py --natural [OUT.wav]  (default: natural.wav)

Default (synthetic): four Harvard sentences spoken by espeak-ng, en-us voice
at 150 words/min (espeak-ng's output is 22.05 kHz mono 16-bit). Needs
espeak-ng on the PATH (apt-get install espeak-ng).

--natural: recorded human speech, codec2's wideband test sample
`speech_orig_16k.wav` (16 kHz mono 16-bit, 10.8 s of several spoken
sentences) as Debian's `codec2-examples` package installs it
(apt-get install codec2-examples; LGPL-2.1 like the rest of codec2's raw/ and
wav/ files, per /usr/share/doc/codec2-examples/copyright). Its SHA-256 is
checked, so everyone scores the same recording.

Both are padded with 0.5 s of silence at both ends; only the standard library
is used.
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import wave

TEXT = (
    "The birch canoe slid on the smooth planks. "
    "Glue the sheet to the dark blue background. "
    "It is easy to tell the depth of a well. "
    "These days a chicken leg is a rare dish."
)
PAD_SECONDS = 0.5
NATURAL_PATH = "/usr/share/codec2/raw/speech_orig_16k.wav"
NATURAL_SHA256 = "594c291468dfb3c0974ee204cf1ddd7925a87c1dbdcd905fcd23a43942b660f7"


def read_wav(path: str):
    with wave.open(path, "rb") as r:
        return r.getparams(), r.readframes(r.getnframes())


def espeak() -> tuple:
    with tempfile.NamedTemporaryFile(suffix=".wav") as raw:
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", "150", "-w", raw.name, TEXT], check=True
        )
        return read_wav(raw.name)


def natural() -> tuple:
    if not os.path.exists(NATURAL_PATH):
        sys.exit(f"{NATURAL_PATH} missing: apt-get install codec2-examples")
    with open(NATURAL_PATH, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != NATURAL_SHA256:
        print(
            f"warning: {NATURAL_PATH} has SHA-256 {digest}, not the {NATURAL_SHA256} "
            "the figures in docs/audio-quality.md were measured with",
            file=sys.stderr,
        )
    return read_wav(NATURAL_PATH)


def main() -> None:
    args = sys.argv[1:]
    use_natural = "--natural" in args
    args = [a for a in args if a != "--natural"]
    out = args[0] if args else ("natural.wav" if use_natural else "speech.wav")
    params, audio = natural() if use_natural else espeak()
    pad = b"\0" * (int(PAD_SECONDS * params.framerate) * params.sampwidth * params.nchannels)
    with wave.open(out, "wb") as w:
        w.setparams(params)
        w.writeframes(pad + audio + pad)
    seconds = len(pad + audio + pad) / (params.sampwidth * params.nchannels * params.framerate)
    print(f"wrote {out}: {seconds:.2f} s at {params.framerate} Hz")


if __name__ == "__main__":
    main()
