package config

import (
	"slices"
	"strings"
	"testing"
)

func TestValidateRecordings(t *testing.T) {
	clearEnv(t)
	path := writeFile(t, "r.yaml", `record:
  format: avi
  template: "../{stream}-{when}"
  reorder: 0s
  segment_size: -1
recordings:
  - name: a
    stream: cam1
  - name: a
    session: s1
    format: mp3
  - name: b
    stream: cam1
    session: s1
  - name: c
    template: /etc/{stream}
forwards:
  - name: a
    stream: cam1
    to: rtp://127.0.0.1:65534
  - name: f2
    session: s1
    tracks: [""]
    to: udp://127.0.0.1:5004
  - name: f3
    stream: cam1
    to: rtp://0.0.0.0:5004
  - name: f4
    stream: cam1
    to: rtp://localhost:5004
`)
	_, err := Check(path, nil)
	if err == nil {
		t.Fatal("Check accepted bad recordings")
	}
	want := []string{
		`record.format: "avi": must be one of auto, webm, mkv, ogg, ivf, mp4`,
		`record.template: "../{stream}-{when}": unknown placeholder {when}: use {stream}, {session}, {track} or {start}`,
		`record.segment_size: -1: must not be negative (0 turns it off)`,
		`record.reorder: 0s: must be positive`,
		`recordings[1].name: "a": is used by recordings[0]`,
		`recordings[1].format: "mp3": must be one of auto, webm, mkv, ogg, ivf, mp4`,
		`recordings[2].session: "s1": must be empty when stream is set: pull a local stream or a session, not both`,
		`recordings[3].stream: "": is required (or session: a session id)`,
		`recordings[3].template: "/etc/{stream}": must stay inside the recordings directory: no leading '/' and no '..'`,
		`forwards[0].name: "a": is used by recordings[0]`,
		`forwards[0].to: "rtp://127.0.0.1:65534": port 65534 leaves no room for the RTCP and second media ports (up to 65537): use a lower port`,
		`forwards[1].tracks[0]: "": must not be empty`,
		`forwards[1].to: "udp://127.0.0.1:5004": scheme "udp": want rtp://HOST:PORT`,
		`forwards[2].to: "rtp://0.0.0.0:5004": host 0.0.0.0 is not a destination: want the receiver's address`,
		`forwards[3].to: "rtp://localhost:5004": bad host "localhost": want an IP address`,
	}
	got := strings.Split(err.Error(), "\n")
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("missing error %q in:\n%s", w, err)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d errors, want %d:\n%s", len(got), len(want), err)
	}
}

func TestRecordingEffective(t *testing.T) {
	def := Default().Record
	r := Recording{Name: "x", Stream: "s", Format: "ogg"}.Effective(def)
	if r.Dir != def.Dir || r.Template != def.Template || r.Format != "ogg" {
		t.Errorf("Effective = %+v", r)
	}
	f := Forward{Name: "out"}
	if got := f.SDPPath(def); got != "recordings/out.sdp" {
		t.Errorf("SDPPath = %q", got)
	}
}
