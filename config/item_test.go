package config

import (
	"strings"
	"testing"
	"time"
)

func TestDecodeItem(t *testing.T) {
	r, err := DecodeItem[Recording]("recordings[api]", []byte(`{"name":"call","session":"abc","tracks":["a"],"segment_duration":"10m","segment_size":1000}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "call" || r.Session != "abc" || r.SegmentDuration != 10*time.Minute || r.SegmentSize != 1000 || len(r.Tracks) != 1 {
		t.Errorf("DecodeItem = %+v", r)
	}
	_, err = DecodeItem[Stream]("streams[api]", []byte(`{"name":"x","sorce":"rtp://0.0.0.0:5004"}`))
	if err == nil || !strings.Contains(err.Error(), "sorce") {
		t.Errorf("unknown key: %v", err)
	}
	_, err = DecodeItem[Recording]("recordings[api]", []byte(`{"name":"x","segment_duration":30}`))
	if err == nil || !strings.Contains(err.Error(), "recordings[api].segment_duration") {
		t.Errorf("bad duration: %v", err)
	}
	if _, err := DecodeItem[Forward]("forwards[api]", []byte(`[1]`)); err == nil {
		t.Error("a JSON list was accepted")
	}
}
