package lab

// ProbeResult is what the prober (deploy/lab/prober) prints: how many
// long-lived connections survived a failure and how soon new connections
// succeeded again.
type ProbeResult struct {
	Conns    int `json:"conns"`
	Survived int `json:"survived"`
	// SurvivalPct is Survived as a share of Conns, in percent.
	SurvivalPct float64 `json:"survival_pct"`
	// Errors counts held connections that failed, by kind (reset, timeout,
	// eof, other), and Late those that never failed but resumed after the
	// grace period or had stopped being answered at the end.
	Errors map[string]int `json:"errors"`
	Late   int            `json:"late"`
	// MaxStallMs is the longest wait for an answer across the mark among
	// surviving connections.
	MaxStallMs float64 `json:"max_stall_ms"`
	// Failures are the first few failed connections, for the log.
	Failures []string `json:"failures,omitempty"`

	NewAttempts int `json:"new_attempts"`
	NewFailures int `json:"new_failures"`
	// RecoveryMs is how long after the mark new connections succeeded
	// again for good (0: none failed).
	RecoveryMs float64 `json:"recovery_ms"`
}
