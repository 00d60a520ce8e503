#!/usr/bin/env python3
"""Make the speech input for examples/audio_quality.rs with espeak-ng.

usage: python3 scripts/make_speech.py [OUT.wav]      (default: speech.wav)

Four Harvard sentences, en-us voice at 150 words/min (espeak-ng's output is
22.05 kHz mono 16-bit), padded with 0.5 s of silence at both ends. Needs
espeak-ng on the PATH (apt-get install espeak-ng); the padding uses only the
standard library.
"""
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


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "speech.wav"
    with tempfile.NamedTemporaryFile(suffix=".wav") as raw:
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", "150", "-w", raw.name, TEXT], check=True
        )
        with wave.open(raw.name, "rb") as r:
            params = r.getparams()
            audio = r.readframes(r.getnframes())
    pad = b"\0" * (int(PAD_SECONDS * params.framerate) * params.sampwidth * params.nchannels)
    with wave.open(out, "wb") as w:
        w.setparams(params)
        w.writeframes(pad + audio + pad)
    seconds = len(pad + audio + pad) / (params.sampwidth * params.nchannels * params.framerate)
    print(f"wrote {out}: {seconds:.2f} s at {params.framerate} Hz")


if __name__ == "__main__":
    main()
