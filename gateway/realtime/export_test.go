package realtime

// LockedSessions returns how many sessions have a mutation in progress.
func LockedSessions(c *Client) int { return c.sessions.len() }

// Waiters returns how many mutations wait for sessionID, or -1 if none runs.
func Waiters(c *Client, sessionID string) int { return c.sessions.waiters(sessionID) }
