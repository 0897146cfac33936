package wish

// End ends a stream the daemon took out of its registry (a reload removed
// or changed it, or the control API deleted it): its WHIP publisher, its
// relay publication and its WHEP viewers go, with why as the reason. A
// viewer kept on the old Stream would wait forever for a publication that
// no longer comes; ended, its player reconnects (the /watch page retries)
// and finds whatever stream now has the name. New POSTs to st are refused
// as for a stream that went away.
func (h *Handler) End(st *Stream, why string) {
	st.op.Lock()
	st.mu.Lock()
	st.removed = true
	pub, relay := st.pub, st.relay
	st.relay = nil
	st.mu.Unlock()
	if pub != nil {
		pub.finish(why)
	}
	if relay != nil {
		h.dropRelay(relay)
	}
	st.op.Unlock()
	st.endViewers(why)
}
