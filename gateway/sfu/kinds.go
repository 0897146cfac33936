package sfu

import "github.com/pion/webrtc/v4"

var kinds = map[string]webrtc.RTPCodecType{
	"audio": webrtc.RTPCodecTypeAudio,
	"video": webrtc.RTPCodecTypeVideo,
}

var recvonly = webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}

func answerDesc(sdp string) webrtc.SessionDescription {
	return webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}
}
