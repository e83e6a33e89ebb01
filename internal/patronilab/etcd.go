package patronilab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// EtcdMember is one member of the lab's etcd cluster.
type EtcdMember struct {
	Name       string `json:"name"`
	ClientPort int    `json:"client_port"`
	PeerPort   int    `json:"peer_port"`
	DataDir    string `json:"data_dir"`
	LogPath    string `json:"log_path"`
	Pid        int    `json:"pid"`

	proc *proc
}

// ClientURL is where clients (Patroni, etcdctl) reach the member.
func (m *EtcdMember) ClientURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(m.ClientPort)
}

func (m *EtcdMember) peerURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(m.PeerPort)
}

// Running reports whether the member's process runs.
func (m *EtcdMember) Running() bool { return m.proc.alive() }

// initialCluster is etcd's --initial-cluster value for members.
func initialCluster(members []*EtcdMember) string {
	parts := make([]string, len(members))
	for i, m := range members {
		parts[i] = m.Name + "=" + m.peerURL()
	}
	return strings.Join(parts, ",")
}

// start starts the member. On the first start the data directory is
// empty and the member joins the new cluster; on later starts etcd ignores
// the initial-cluster flags and uses its data directory.
func (m *EtcdMember) start(o *Options, token, cluster string) error {
	if err := os.MkdirAll(m.DataDir, 0o700); err != nil {
		return err
	}
	args := []string{
		"--name", m.Name,
		"--data-dir", m.DataDir,
		"--listen-client-urls", m.ClientURL(),
		"--advertise-client-urls", m.ClientURL(),
		"--listen-peer-urls", m.peerURL(),
		"--initial-advertise-peer-urls", m.peerURL(),
		"--initial-cluster", cluster,
		"--initial-cluster-token", token,
		"--initial-cluster-state", "new",
		"--logger", "zap",
		"--log-outputs", "stderr",
	}
	p, err := spawn(spawnSpec{
		path:    o.Etcd,
		args:    args,
		env:     []string{"PATH=" + os.Getenv("PATH"), "HOME=" + m.DataDir},
		dir:     m.DataDir,
		logPath: m.LogPath,
		detach:  o.KeepRunning,
	}, m.DataDir)
	if err != nil {
		return fmt.Errorf("start %s: %w", m.Name, err)
	}
	m.proc = p
	m.Pid = p.pid
	return nil
}

// waitHealthy polls the member's /health endpoint.
func (m *EtcdMember) waitHealthy(ctx context.Context) error {
	c := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		if !m.proc.alive() {
			return fmt.Errorf("%s exited; see %s", m.Name, m.LogPath)
		}
		last = etcdHealth(ctx, c, m.ClientURL())
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy: %v (%w)", m.Name, last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func etcdHealth(ctx context.Context, c *http.Client, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var h struct {
		Health string `json:"health"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return fmt.Errorf("health: %s", b)
	}
	if h.Health != "true" {
		return fmt.Errorf("health: %s", b)
	}
	return nil
}

// freePorts asks the kernel for n distinct free loopback ports. The
// listeners stay open until all are picked so none repeats; another
// process may still grab a port before we bind it, which Start reports.
func freePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func etcdMembers(base string, ports []int) []*EtcdMember {
	ms := make([]*EtcdMember, len(ports)/2)
	for i := range ms {
		name := "etcd" + strconv.Itoa(i+1)
		ms[i] = &EtcdMember{
			Name:       name,
			ClientPort: ports[2*i],
			PeerPort:   ports[2*i+1],
			DataDir:    filepath.Join(base, name),
			LogPath:    filepath.Join(base, name+".log"),
		}
	}
	return ms
}
