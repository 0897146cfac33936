// Package container writes the frames of recorded tracks into media files
// that survive a crash: WebM and Matroska, Ogg (Opus), IVF (VP8, VP9, AV1)
// and fragmented MP4. It is the last stage of bridge/record: it receives
// whole frames (access units, Opus packets) with presentation times and
// knows nothing of RTP.
//
// Every format is written live: the bytes on disk are a playable prefix at
// any moment, at most about half a second behind the last frame written
// (Matroska blocks and IVF frames go to the OS as they come; Ogg pages and
// MP4 fragments are closed every 500 ms of media at the latest). Close only
// improves the file (durations, cues, seek index, end-of-stream marks), and
// Repair does the same for a file whose writer was killed.
//
// A Writer is not safe for concurrent use: the recorder calls it from one
// goroutine. Frames of different tracks should come roughly in time order
// (the recorder's sync stage does that); each track's PTS never decreases.
package container
