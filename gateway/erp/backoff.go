package erp

import (
	"math/rand/v2"
	"time"
)

// Backoff defaults.
const (
	DefaultBackoffBase     = 2 * time.Second
	DefaultBackoffMax      = 10 * time.Minute
	DefaultBackoffAttempts = 12
)

// Backoff is the retry schedule the pipeline uses between delivery attempts:
// exponential with full jitter. Zero fields take the defaults.
type Backoff struct {
	Base     time.Duration // ceiling of the first delay; default 2s
	Max      time.Duration // largest ceiling; default 10m
	Attempts int           // attempts in all, the first included; default 12

	// Rand returns a number in [0, 1); nil uses math/rand/v2.
	Rand func() float64
}

func (b Backoff) norm() Backoff {
	if b.Base <= 0 {
		b.Base = DefaultBackoffBase
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Max < b.Base {
		b.Max = b.Base
	}
	if b.Attempts <= 0 {
		b.Attempts = DefaultBackoffAttempts
	}
	if b.Rand == nil {
		b.Rand = rand.Float64
	}
	return b
}

// Ceiling is the largest delay Next can pick (before Retry-After) after the
// given attempt failed: min(Max, Base·2^(attempt-1)). It never decreases
// as attempt grows.
func (b Backoff) Ceiling(attempt int) time.Duration {
	b = b.norm()
	c := b.Base
	for i := 1; i < attempt && c < b.Max; i++ {
		c *= 2
	}
	return min(c, b.Max)
}

// Next says how long to wait after attempt number attempt (1 = the first)
// failed with a Retry outcome: a uniformly random delay in [0, Ceiling(attempt)],
// but at least retryAfter (the ERP's Retry-After is honoured even above Max).
// It reports false when attempt was the last one: the document goes dead.
func (b Backoff) Next(attempt int, retryAfter time.Duration) (time.Duration, bool) {
	b = b.norm()
	if attempt >= b.Attempts {
		return 0, false
	}
	attempt = max(attempt, 1)
	c := b.Ceiling(attempt)
	r := b.Rand()
	if r < 0 || r >= 1 {
		r = 0
	}
	d := time.Duration(r * float64(c+1))
	return max(min(d, c), retryAfter), true
}
