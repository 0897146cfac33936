package config

import (
	"reflect"
	"testing"
	"time"
)

func TestDiffConfigs(t *testing.T) {
	base := func() *Config {
		c := Default()
		c.Streams = []Stream{
			{Name: "cam1", Source: "rtp://0.0.0.0:5004?codec=vp8"},
			{Name: "cam2", Source: "rtp://0.0.0.0:5006?codec=vp8"},
		}
		c.Recordings = []Recording{{Name: "rec1", Stream: "cam1"}, {Name: "rec2", Stream: "cam2", Format: "mkv"}}
		c.Forwards = []Forward{{Name: "out1", Stream: "cam1", To: "rtp://127.0.0.1:7000"}}
		return c
	}
	if d := DiffConfigs(base(), base()); !d.Empty() {
		t.Errorf("same config: %+v", d)
	}

	cur := base()
	cur.Streams[1].Source = "rtp://0.0.0.0:5008?codec=vp8"               // cam2 changed
	cur.Streams = append(cur.Streams, Stream{Name: "cam3", Source: "x"}) // added
	cur.Recordings = cur.Recordings[:1]                                  // rec2 removed
	cur.Log.Level = "debug"
	d := DiffConfigs(base(), cur)
	want := []Change{
		{KindStream, "cam2", Changed}, {KindStream, "cam3", Added},
		{KindRecording, "rec2", Removed},
	}
	if !reflect.DeepEqual(d.Pipelines, want) {
		t.Errorf("Pipelines = %+v, want %+v", d.Pipelines, want)
	}
	if !reflect.DeepEqual(d.Other, []string{"log.level"}) || len(d.Restart) != 0 {
		t.Errorf("Other = %v, Restart = %v", d.Other, d.Restart)
	}

	// record.* restarts every recording; record.dir also the forwards
	// whose SDP file lives there.
	cur = base()
	cur.Record.Reorder = time.Second
	cur.Record.Dir = "/srv/rec"
	d = DiffConfigs(base(), cur)
	want = []Change{
		{KindRecording, "rec1", Changed}, {KindRecording, "rec2", Changed},
		{KindForward, "out1", Changed},
	}
	if !reflect.DeepEqual(d.Pipelines, want) || len(d.Other) != 0 {
		t.Errorf("record change: %+v", d)
	}

	cur = base()
	cur.HTTP.Listen = "127.0.0.1:9999"
	cur.WebRTC.NACK.ResponderSize = 2048
	d = DiffConfigs(base(), cur)
	if !reflect.DeepEqual(d.Restart, []string{"http.listen", "webrtc.nack.responder_size"}) || len(d.Pipelines) != 0 {
		t.Errorf("restart keys: %+v", d)
	}
}
