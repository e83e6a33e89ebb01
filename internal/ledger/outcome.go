package ledger

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

// Outcome is what one failover scenario measured and which parts of the
// contract it broke.
type Outcome struct {
	Name    string
	Result  *Result
	Check   *Check
	Summary Summary

	// Event is when the disturbance began; Accept when the new (or
	// restarted) primary was first seen to accept writes, NewNode its name.
	Event, Accept time.Time
	NewNode       string
	// ResumeFirst and ResumeAll: from Accept to the first acknowledged write
	// on NewNode through the pooler, and to the moment every client had one.
	ResumeFirst, ResumeAll time.Duration
	Resumed                bool
	// NoPrimary is the longest time the pooler knew no primary; Held the
	// longest time one client was held, HeldClients how many were.
	NoPrimary, Held time.Duration
	HeldClients     int
	// LongestWrite is the longest write call (a statement on an open
	// connection), LongestConnect the longest connect.
	LongestWrite, LongestConnect time.Duration

	// Failures break the contract (tests fail on them); Missed are latency
	// goals not met (the report shows them, tests only log them); Notes are
	// for the reader.
	Failures []string
	Missed   []string
	Notes    []string
}

// Fail records a broken part of the contract.
func (o *Outcome) Fail(format string, args ...any) {
	o.Failures = append(o.Failures, fmt.Sprintf(format, args...))
}

// Miss records a missed latency goal.
func (o *Outcome) Miss(format string, args ...any) {
	o.Missed = append(o.Missed, fmt.Sprintf(format, args...))
}

// Note records a remark.
func (o *Outcome) Note(format string, args ...any) {
	o.Notes = append(o.Notes, fmt.Sprintf(format, args...))
}

// Verdict is "ok", "slow: …" when only latency goals were missed, or
// "FAIL: …".
func (o *Outcome) Verdict() string {
	switch {
	case len(o.Failures) > 0:
		return "FAIL: " + strings.Join(o.Failures, "; ")
	case len(o.Missed) > 0:
		return "slow: " + strings.Join(o.Missed, "; ")
	}
	return "ok"
}

// Text is the outcome in a few lines, for a log.
func (o *Outcome) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s\n", o.Name, o.Verdict())
	fmt.Fprintf(&b, "  load: %s\n", o.Summary)
	if o.Check != nil {
		fmt.Fprintf(&b, "  rows: %s\n", o.Check)
	}
	if !o.Accept.IsZero() {
		fmt.Fprintf(&b, "  new primary %s accepted writes %s after the event", o.NewNode, o.Accept.Sub(o.Event).Round(time.Millisecond))
		if o.Resumed {
			fmt.Fprintf(&b, "; writes through the pooler resumed %s later (all clients %s)", o.ResumeFirst.Round(time.Millisecond), o.ResumeAll.Round(time.Millisecond))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "  pooler: no primary for %s, clients held up to %s (%d held); longest write %s, longest connect %s\n",
		o.NoPrimary.Round(time.Millisecond), o.Held.Round(time.Millisecond), o.HeldClients,
		o.LongestWrite.Round(time.Millisecond), o.LongestConnect.Round(time.Millisecond))
	for _, n := range o.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	if o.Result != nil && o.Summary.Errors > 0 {
		for _, l := range strings.Split(strings.TrimSpace(o.Result.ErrorLog(12)), "\n") {
			fmt.Fprintf(&b, "  error: %s\n", l)
		}
	}
	return b.String()
}

// Table formats outcomes as the failover report's table.
func Table(outs []*Outcome) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tERRORS\tLONGEST GAP\tRESUMED\tNO PRIMARY / HELD (pgwrt log)\tLONGEST CONNECT\tLONGEST WRITE\tLOST ROWS\tSTALLS > 1s\tVERDICT")
	for _, o := range outs {
		lost := "-"
		if o.Check != nil {
			lost = fmt.Sprint(len(o.Check.Lost))
		}
		resumed := "-"
		if o.Resumed {
			resumed = ms(o.ResumeAll)
		}
		errs := fmt.Sprint(o.Summary.Errors)
		if o.Summary.Errors > 0 {
			errs += " (" + codes(o.Summary.Codes) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s / %s\t%s\t%s\t%s\t%d\t%s\n", o.Name, errs, ms(o.Summary.MaxGap), resumed,
			ms(o.NoPrimary), ms(o.Held), ms(o.LongestConnect), ms(o.LongestWrite), lost, o.Summary.Stalls, o.Verdict())
	}
	tw.Flush()
	return b.String()
}

func ms(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	if d < 10*time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

func codes(m map[string]int) string {
	var out []string
	for _, k := range sortedKeys(m) {
		out = append(out, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(out, " ")
}

func sortedKeys(m map[string]int) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && ks[j] < ks[j-1]; j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
	return ks
}
