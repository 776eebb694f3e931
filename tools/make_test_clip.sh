#!/usr/bin/env bash
# Regenerate the short synthetic speech clip used by the feature tests.
# Needs espeak-ng and sox (Debian packages). Output: tests/data/speech_clip.flac,
# 16 kHz mono 16-bit FLAC, about 7 s, well under 100 KB. The sentence is also written to
# tests/data/speech_clip.txt so the transcription test compares against the source text.
set -euo pipefail
cd "$(dirname "$0")/.."
SENTENCE="The quick brown fox jumped over the lazy dog. Call me tomorrow."
tmp="$(mktemp --suffix=.wav)"
trap 'rm -f "$tmp"' EXIT
espeak-ng -v en-us -s 130 -w "$tmp" "$SENTENCE"
sox "$tmp" -r 16000 -c 1 -b 16 -C 8 tests/data/speech_clip.flac
printf '%s\n' "$SENTENCE" > tests/data/speech_clip.txt
ls -l tests/data/speech_clip.flac
