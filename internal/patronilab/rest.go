package patronilab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// ClusterStatus is Patroni's GET /cluster answer: the members as the DCS
// sees them.
type ClusterStatus struct {
	Members []MemberStatus `json:"members"`
	Pause   bool           `json:"pause"`
}

// MemberStatus is one member of ClusterStatus. Role is "leader",
// "replica" or "sync_standby"; State is "running", "starting",
// "stopped", "crashed", ...
type MemberStatus struct {
	Name     string          `json:"name"`
	Role     string          `json:"role"`
	State    string          `json:"state"`
	Host     string          `json:"host"`
	Port     int             `json:"port"`
	APIURL   string          `json:"api_url"`
	Timeline int             `json:"timeline"`
	Lag      json.RawMessage `json:"lag,omitempty"`
}

// Leader returns the member holding the leader key, or nil.
func (s *ClusterStatus) Leader() *MemberStatus {
	for i := range s.Members {
		if s.Members[i].Role == "leader" {
			return &s.Members[i]
		}
	}
	return nil
}

// Member returns the member called name, or nil.
func (s *ClusterStatus) Member(name string) *MemberStatus {
	for i := range s.Members {
		if s.Members[i].Name == name {
			return &s.Members[i]
		}
	}
	return nil
}

// NodeStatus is Patroni's GET /patroni answer: one node's own view of its
// PostgreSQL. Role is "master" for a primary, "replica" otherwise.
type NodeStatus struct {
	State           string        `json:"state"`
	Role            string        `json:"role"`
	Timeline        int           `json:"timeline"`
	Pause           bool          `json:"pause"`
	ClusterUnlocked bool          `json:"cluster_unlocked"`
	Replication     []Replication `json:"replication"`
}

// Replication is one WAL sender on a primary.
type Replication struct {
	User            string `json:"usename"`
	ApplicationName string `json:"application_name"`
	ClientAddr      string `json:"client_addr"`
	State           string `json:"state"`
	SyncState       string `json:"sync_state"`
}

// IsPrimary reports whether the node's PostgreSQL runs as a primary.
func (s *NodeStatus) IsPrimary() bool {
	return s.State == "running" && (s.Role == "master" || s.Role == "primary")
}

var restClient = &http.Client{Timeout: 5 * time.Second}

// restError is a non-2xx answer of the REST API.
type restError struct {
	status int
	body   string
}

func (e *restError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.body) }

// rest calls the REST API and decodes a JSON answer into out (if not nil).
// Some endpoints (GET /patroni) answer 503 with a valid body; with
// allow503 that body is decoded too.
func rest(ctx context.Context, method, url string, in, out any, allow503 bool) ([]byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := restClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	ok := resp.StatusCode/100 == 2 || (allow503 && resp.StatusCode == http.StatusServiceUnavailable)
	if !ok {
		return b, &restError{status: resp.StatusCode, body: string(bytes.TrimSpace(b))}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return b, fmt.Errorf("%s %s: %w", method, url, err)
		}
	}
	return b, nil
}

// Status asks the node's Patroni about its own PostgreSQL.
func (n *PatroniNode) Status(ctx context.Context) (*NodeStatus, error) {
	var s NodeStatus
	if _, err := rest(ctx, http.MethodGet, n.RESTURL()+"/patroni", nil, &s, true); err != nil {
		return nil, fmt.Errorf("%s: %w", n.Name, err)
	}
	return &s, nil
}

// ClusterStatus asks the running Patroni nodes, in turn, for the cluster
// as the DCS sees it. The first answer wins.
func (c *Cluster) ClusterStatus(ctx context.Context) (*ClusterStatus, error) {
	var errs []error
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		var s ClusterStatus
		if _, err := rest(ctx, http.MethodGet, n.RESTURL()+"/cluster", nil, &s, false); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n.Name, err))
			continue
		}
		return &s, nil
	}
	if len(errs) == 0 {
		return nil, errors.New("no Patroni node is running")
	}
	return nil, errors.Join(errs...)
}
