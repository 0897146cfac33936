#!/bin/sh
# Regenerates demo.ivf and demo.ogg (ffmpeg 5.1 with libvpx and libopus).
#
# Both are exactly 5.000 s as rtgate loops them, so video and audio opened
# with the same Epoch stay in sync loop after loop:
# - demo.ivf: 150 frames at 30 fps (PTS 0..149 in a 1/30 timebase).
# - demo.ogg: 250 Opus packets of 20 ms = 240000 samples. libopus adds a
#   pre-skip of 312 samples, so the tone is trimmed to 240000 - 312 =
#   239688 samples; the packets then add up to exactly 5 s. Default page
#   duration: each Ogg page holds about a second of packets.
# The test pattern shows the running time (testsrc2 also prints it small,
# with the frame number, top left); the tone beeps (double frequency) at
# the start of every second.
set -eu
cd "$(dirname "$0")"

font=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf
if [ -r "$font" ]; then
	video="testsrc2=size=640x360:rate=30,drawtext=fontfile=$font:fontsize=32:fontcolor=white:box=1:boxcolor=black@0.6:x=(w-tw)/2:y=h-th-20:text='rtgate demo %{pts\\:hms}'"
else
	video="testsrc=size=640x360:rate=30:decimals=2" # draws its own running time
fi

ffmpeg -v error -y -f lavfi -i "$video" -frames:v 150 \
	-c:v libvpx -deadline good -cpu-used 2 -b:v 350k -maxrate 500k -bufsize 500k \
	-g 30 -keyint_min 30 -auto-alt-ref 0 -lag-in-frames 0 -threads 1 \
	demo.ivf

ffmpeg -v error -y -f lavfi -i "sine=frequency=440:beep_factor=2:sample_rate=48000" \
	-af "atrim=end_sample=239688" \
	-c:a libopus -b:a 64k -ac 2 -frame_duration 20 \
	demo.ogg
