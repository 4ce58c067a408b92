#!/usr/bin/env bash
# Rebuilds the example clips of the app from nothing but espeak-ng, sox and FFmpeg (see README.md here).
# sox -R makes the noise repeatable, so a rerun gives the same sounds.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. A man's voice (espeak-ng's default American English voice), as Ogg Vorbis.
espeak-ng -v en-us -s 150 -w "$tmp/man.wav" "The next train to Cambridge leaves from platform four at half past nine."
sox "$tmp/man.wav" -r 16000 -c 1 speech_man.ogg

# 2. A woman's voice (British English with espeak-ng's female variant f3, slower), as MP3.
espeak-ng -v en-gb+f3 -s 140 -w "$tmp/woman.wav" "Please remember to bring an umbrella, it is going to rain all afternoon."
sox "$tmp/woman.wav" -r 16000 -c 1 "$tmp/woman16.wav"
ffmpeg -v error -y -i "$tmp/woman16.wav" -c:a libmp3lame -b:a 48k speech_woman.mp3

# 3. Three short 1 kHz beeps separated by silence, as FLAC.
sox -n -r 16000 -c 1 "$tmp/beep.wav" synth 0.25 sine 1000 fade 0.01 0.25 0.01 pad 0 0.35
sox -n -r 16000 -c 1 "$tmp/lead.wav" trim 0 0.3
sox "$tmp/lead.wav" "$tmp/beep.wav" "$tmp/beep.wav" "$tmp/beep.wav" beeps.flac

# 4. A rising melody: C major scale on a plucked string, one note every 0.3 s, as Ogg Vorbis.
notes=()
for semitones in -9 -7 -5 -4 -2 0 2 3; do  # C4 D4 E4 F4 G4 A4 B4 C5, in semitones from A4 (sox's %n)
  sox -n -r 16000 -c 1 "$tmp/note$semitones.wav" synth 0.3 pluck "%$semitones"
  notes+=("$tmp/note$semitones.wav")
done
sox "${notes[@]}" melody.ogg

# 5. Rain-like noise: brown noise with a slow tremolo, 6 s, as Ogg Vorbis.
sox -R -n -r 16000 -c 1 rain_noise.ogg synth 6 brownnoise tremolo 0.3 40 vol 0.6 fade 0.5 6 0.5

# 6. A 40 s clip, longer than the 30 s the model hears: pink noise with a beep every 5 s (the app says it was cut).
sox -n -r 16000 -c 1 "$tmp/tick.wav" synth 0.2 sine 660 pad 0 4.8
sox "$tmp/tick.wav" "$tmp/tick.wav" "$tmp/tick.wav" "$tmp/tick.wav" "$tmp/tick.wav" "$tmp/tick.wav" "$tmp/tick.wav" \
  "$tmp/tick.wav" "$tmp/ticks.wav"
sox -R -n -r 16000 -c 1 "$tmp/pink.wav" synth 40 pinknoise vol 0.15
sox -m "$tmp/pink.wav" "$tmp/ticks.wav" -C 0 long_40s.ogg

ls -l ./*.ogg ./*.mp3 ./*.flac
