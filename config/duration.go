package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration read from "1s", "250ms", "2m", "1h30m" (Go's
// time.ParseDuration syntax) or from a bare integer, which counts seconds as
// pgpool-II and PgBouncer do: health_check_period = 5 is five seconds.
type Duration time.Duration

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String is the time.Duration form ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the time.Duration form, which UnmarshalText reads back.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads "250ms", "2m", ... or a bare integer of seconds (the
// TOML decoder hands integers over as their decimal text).
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := parseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// parseDuration is UnmarshalText; its error is the whole message,
// `bad duration "5x"`.
func parseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	if n, err := strconv.ParseInt(t, 10, 64); err == nil {
		if n > math.MaxInt64/int64(time.Second) || n < math.MinInt64/int64(time.Second) {
			return 0, fmt.Errorf("bad duration %s: too large", quote(s))
		}
		return Duration(time.Duration(n) * time.Second), nil
	}
	v, err := time.ParseDuration(t)
	if err != nil || t == "" {
		return 0, fmt.Errorf("bad duration %s (want e.g. \"1s\", \"250ms\", \"2m\" or seconds)", quote(s))
	}
	return Duration(v), nil
}
