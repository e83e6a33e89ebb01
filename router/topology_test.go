package router

import (
	"strings"
	"testing"
	"time"
)

// TestChoosePrimary walks the contract's rules (design §5) in order, and
// checks that each choice says which rule made it.
func TestChoosePrimary(t *testing.T) {
	p := func(name string, port, tl int) NodeState {
		return NodeState{Name: name, Host: "127.0.0.1", Port: port, Up: true, Role: RolePrimary, Timeline: tl}
	}
	s := func(name string, port, tl, upstream int) NodeState {
		return NodeState{Name: name, Host: "127.0.0.1", Port: port, Up: true, Role: RoleStandby, Timeline: tl, UpstreamHost: "localhost", UpstreamPort: upstream}
	}
	down := NodeState{Name: "n9", Host: "127.0.0.1", Port: 9, Role: RolePrimary, Timeline: 9}
	now := time.Now()
	grace := 4 * time.Second
	// seen: a standby last seen streaming from upstream ago, now down
	// (up=false) or up with no WAL receiver.
	seen := func(name string, port, upstream int, ago time.Duration, up bool) NodeState {
		n := s(name, port, 1, 0)
		n.UpstreamHost, n.UpstreamPort = "", 0
		n.seenHost, n.seenPort, n.seenAt = "127.0.0.1", upstream, now.Add(-ago)
		if !up {
			n.Up, n.Role = false, RoleUnknown
		}
		return n
	}
	// streaming: up, streaming from upstream now, last seen on another.
	streaming := s("n3", 3, 1, 2)
	streaming.seenHost, streaming.seenPort, streaming.seenAt = "127.0.0.1", 1, now
	for _, c := range []struct {
		name  string
		nodes []NodeState
		want  int
		why   string
		alarm bool
	}{
		{"none", []NodeState{s("n1", 1, 1, 0), down}, -1, "no node accepts writes", false},
		{"only one", []NodeState{s("n1", 1, 1, 2), p("n2", 2, 1), down}, 1, "the only node", false},
		{"standby evidence beats a newer timeline", []NodeState{p("n1", 1, 1), p("n2", 2, 2), s("n3", 3, 1, 1)}, 0, "standbys streaming from it: 1", false},
		{"no evidence: newest timeline", []NodeState{p("n1", 1, 1), p("n2", 2, 2), s("n3", 3, 1, 0)}, 1, "newest timeline (2)", false},
		{"evidence tie, timelines tie", []NodeState{p("n1", 1, 2), p("n2", 2, 2), s("n3", 3, 2, 1), s("n4", 4, 2, 2)}, -1, "no rule", true},
		{"a standby that missed a check counts within the grace", []NodeState{p("n1", 1, 1), p("n2", 2, 2), seen("n3", 3, 1, 3*time.Second, false)}, 0, "1 as last seen", false},
		{"a standby with no WAL receiver counts within the grace", []NodeState{p("n1", 1, 1), p("n2", 2, 2), seen("n3", 3, 1, time.Second, true)}, 0, "1 as last seen", false},
		{"after the grace, the timeline rule", []NodeState{p("n1", 1, 1), p("n2", 2, 2), seen("n3", 3, 1, 5*time.Second, false)}, 1, "newest timeline (2)", false},
		{"what a standby says now beats what it said", []NodeState{p("n1", 1, 1), p("n2", 2, 1), streaming}, 1, "standbys streaming from it: 1", false},
	} {
		got, alarm, why := choosePrimary(c.nodes, now, grace)
		if got != c.want || !strings.Contains(why, c.why) || (alarm != "") != c.alarm {
			t.Errorf("%s: chose %d (%q, alarm %q), want %d (%q, alarm %v)", c.name, got, why, alarm, c.want, c.why, c.alarm)
		}
	}
	text := nodesText([]NodeState{p("n1", 1, 3), s("n2", 2, 3, 1), down, seen("n3", 3, 1, 1500*time.Millisecond, false)}, now)
	if want := "n1=primary/tl3 n2=standby/tl3<-localhost:1 n9=down n3=down(was<-127.0.0.1:1 1.5s ago)"; text != want {
		t.Errorf("nodesText = %q, want %q", text, want)
	}
}
