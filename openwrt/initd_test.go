package openwrt

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// repoRoot is where go test runs this package from, one level down.
const repoRoot = ".."

var initScript = filepath.Join(repoRoot, "init.d", "pgwrt")

// shells returns the shells to run the init script with: /bin/sh, and
// busybox ash, which is OpenWrt's /bin/sh, when it is installed.
func shells(t *testing.T) [][]string {
	t.Helper()
	var sh [][]string
	if p, err := exec.LookPath("sh"); err == nil {
		sh = append(sh, []string{p})
	}
	if p, err := exec.LookPath("busybox"); err == nil {
		sh = append(sh, []string{p, "sh"})
	} else {
		t.Log("busybox not installed: testing with /bin/sh only")
	}
	if len(sh) == 0 {
		t.Skip("no shell")
	}
	return sh
}

// harness stands in for /etc/rc.common, /lib/functions.sh and procd.sh:
// it defines the functions the init script calls as stubs that print each
// call, one line per call with every argument in brackets, sources the
// script and runs the functions named on the command line.
//
// config_load evaluates $PGWRT_TEST_CONFIG, shell assignments of
// CONFIG_<section>_<option> made from a UCI file, which is what the real
// config_load leaves behind; config_get and config_get_bool behave like the
// real ones in /lib/functions.sh (an empty value counts as unset, booleans
// accept 1/on/true/yes/enabled and 0/off/false/no/disabled).
const harness = `
record() {
	printf '%s' "$1"; shift
	for a in "$@"; do printf ' [%s]' "$a"; done
	printf '\n'
}
procd_open_instance()      { record procd_open_instance "$@"; }
procd_set_param()          { record procd_set_param "$@"; }
procd_append_param()       { record procd_append_param "$@"; }
procd_close_instance()     { record procd_close_instance "$@"; }
procd_add_reload_trigger() { record procd_add_reload_trigger "$@"; }
config_load() {
	record config_load "$@"
	[ "$1" = pgwrt ] || return 1
	eval "$PGWRT_TEST_CONFIG"
}
config_get() {
	eval "$1=\"\${CONFIG_$2_$3:-\$4}\""
}
config_get_bool() {
	local _tmp
	config_get _tmp "$2" "$3" "$4"
	case "$_tmp" in
		1|on|true|yes|enabled) _tmp=1 ;;
		0|off|false|no|disabled) _tmp=0 ;;
		*) _tmp="$4" ;;
	esac
	eval "$1=\$_tmp"
}

initscript=$1; shift
. "$initscript"
echo "sourced START=$START STOP=$STOP USE_PROCD=$USE_PROCD"
for fn in "$@"; do
	"$fn"
	echo "$fn returned $?"
done
`

// uciToShell turns a (simple) UCI file into the CONFIG_ variables
// config_load sets: config, option, single-quoted or bare values, comments.
func uciToShell(t *testing.T, uci string) string {
	t.Helper()
	line := regexp.MustCompile(`^\s*(config|option)\s+([A-Za-z0-9_]+)(?:\s+(?:'([^']*)'|([^\s'#]+)))?\s*(?:#.*)?$`)
	var b strings.Builder
	section, anon := "", 0
	sc := bufio.NewScanner(strings.NewReader(uci))
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		if strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %d: test parser cannot read %q", n, l)
		}
		value := m[3] + m[4]
		switch m[1] {
		case "config":
			section = value
			if section == "" {
				anon++
				section = fmt.Sprintf("cfg%02d", anon)
			}
		case "option":
			if section == "" {
				t.Fatalf("line %d: option outside a section", n)
			}
			fmt.Fprintf(&b, "CONFIG_%s_%s='%s'\n", section, m[2], strings.ReplaceAll(value, "'", `'\''`))
		}
	}
	return b.String()
}

// runInit runs the init script's functions under shell with the UCI text
// as /etc/config/pgwrt and returns the recorded calls.
func runInit(t *testing.T, shell []string, uci string, fns ...string) []string {
	t.Helper()
	args := append(slices.Clone(shell[1:]), "-c", harness, "harness", initScript)
	cmd := exec.Command(shell[0], append(args, fns...)...)
	cmd.Env = append(os.Environ(), "PGWRT_TEST_CONFIG="+uciToShell(t, uci))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", shell, err, out)
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n")
}

func startCalls(nofile string) []string {
	return []string{
		"procd_open_instance",
		"procd_set_param [command] [/usr/sbin/pgwrt] [run] [--uci] [/etc/config/pgwrt]",
		"procd_set_param [respawn] [60] [5] [10]",
		"procd_set_param [stdout] [1]",
		"procd_set_param [stderr] [1]",
		"procd_set_param [file] [/etc/config/pgwrt]",
		"procd_set_param [reload_signal] [HUP]",
		"procd_set_param [term_timeout] [10]",
		"procd_set_param [limits] [nofile=" + nofile + " " + nofile + "]",
		"procd_close_instance",
	}
}

func TestInitScriptStartService(t *testing.T) {
	defaultConfig, err := os.ReadFile(filepath.Join(repoRoot, "openwrt", "files", "pgwrt.config"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		uci  string
		want []string // calls after config_load; nil = no instance
	}{
		{"shipped default config", string(defaultConfig), startCalls("4096")},
		{"enabled 0", "config pgwrt 'main'\n\toption enabled '0'\n", nil},
		{"enabled off", "config pgwrt 'main'\n\toption enabled off\n", nil},
		{"enabled no", "config pgwrt 'main'\n\toption enabled 'no'\n", nil},
		{"enabled yes", "config pgwrt 'main'\n\toption enabled 'yes'\n", startCalls("4096")},
		{"enabled unset", "config pgwrt 'main'\n\toption listen ':5432'\n", startCalls("4096")},
		{"enabled empty", "config pgwrt 'main'\n\toption enabled ''\n", startCalls("4096")},
		{"no main section", "config backend 'node1'\n\toption host '192.168.9.11'\n", startCalls("4096")},
		{"empty file", "", startCalls("4096")},
		{"nofile 8192", "config pgwrt 'main'\n\toption nofile '8192'\n", startCalls("8192")},
		{"nofile garbage", "config pgwrt 'main'\n\toption nofile '4096; reboot'\n", startCalls("4096")},
		{"nofile negative", "config pgwrt 'main'\n\toption nofile '-1'\n", startCalls("4096")},
		{"nofile 0", "config pgwrt 'main'\n\toption nofile '0'\n", startCalls("4096")},
		{"nofile 1048576", "config pgwrt 'main'\n\toption nofile '1048576'\n", startCalls("1048576")},
		{"nofile too many", "config pgwrt 'main'\n\toption nofile '1048577'\n", startCalls("4096")},
		{"nofile huge", "config pgwrt 'main'\n\toption nofile '99999999999999999999'\n", startCalls("4096")},
		{"nofile leading zeros", "config pgwrt 'main'\n\toption nofile '0064'\n", startCalls("0064")},
		{"enabled in another section", "config backend 'main2'\n\toption enabled '0'\n", startCalls("4096")},
	} {
		for _, sh := range shells(t) {
			t.Run(tc.name+"/"+filepath.Base(sh[0]), func(t *testing.T) {
				got := runInit(t, sh, tc.uci, "start_service")
				want := append([]string{"sourced START=95 STOP=10 USE_PROCD=1", "config_load [pgwrt]"}, tc.want...)
				want = append(want, "start_service returned 0")
				if !slices.Equal(got, want) {
					t.Errorf("calls:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
				}
			})
		}
	}
}

func TestInitScriptServiceTriggers(t *testing.T) {
	for _, sh := range shells(t) {
		got := runInit(t, sh, "", "service_triggers")
		want := []string{
			"sourced START=95 STOP=10 USE_PROCD=1",
			"procd_add_reload_trigger [pgwrt]",
			"service_triggers returned 0",
		}
		if !slices.Equal(got, want) {
			t.Errorf("%v: calls:\n  %s\nwant:\n  %s", sh, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
}

func TestInitScriptFile(t *testing.T) {
	b, err := os.ReadFile(initScript)
	if err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(string(b), "\n"); first != "#!/bin/sh /etc/rc.common" {
		t.Errorf("first line %q: rc.common runs the script only with #!/bin/sh /etc/rc.common", first)
	}
	st, err := os.Stat(initScript)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&0o111 == 0 {
		t.Errorf("%s is not executable (%v)", initScript, st.Mode())
	}
	for _, sh := range shells(t) {
		args := append(slices.Clone(sh[1:]), "-n", initScript)
		if out, err := exec.Command(sh[0], args...).CombinedOutput(); err != nil {
			t.Errorf("%v -n: %v\n%s", sh, err, out)
		}
	}
}

// unitKeys reads the Key=Value lines of a systemd unit, by section.
func unitKeys(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string][]string{}
	section := ""
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "["):
			section = strings.Trim(l, "[]")
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Fatalf("%s: line %q", path, l)
			}
			keys[section+"."+k] = append(keys[section+"."+k], v)
		}
	}
	return keys
}

func TestSystemdUnits(t *testing.T) {
	service := filepath.Join(repoRoot, "init.d", "pgwrt.service")
	socket := filepath.Join(repoRoot, "init.d", "pgwrt.socket")
	svc := unitKeys(t, service)
	for k, want := range map[string]string{
		"Service.Type":                    "notify",
		"Service.ExecStart":               "/usr/sbin/pgwrt run -c /etc/pgwrt/pgwrt.toml",
		"Service.ExecReload":              "/bin/kill -HUP $MAINPID",
		"Service.WatchdogSec":             "30",
		"Service.DynamicUser":             "yes",
		"Service.ProtectSystem":           "strict",
		"Service.NoNewPrivileges":         "yes",
		"Service.CapabilityBoundingSet":   "",
		"Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"Service.SystemCallFilter":        "@system-service",
		"Install.WantedBy":                "multi-user.target",
		"Service.SystemCallArchitectures": "native",
		"Service.PrivateDevices":          "yes",
		"Service.RestrictSUIDSGID":        "yes",
		"Service.MemoryDenyWriteExecute":  "yes",
		"Service.ProtectKernelTunables":   "yes",
		"Service.ProtectControlGroups":    "yes",
		"Service.LockPersonality":         "yes",
		"Service.RestrictNamespaces":      "yes",
		"Service.RestrictRealtime":        "yes",
		"Service.ProtectHome":             "yes",
		"Service.PrivateTmp":              "yes",
		"Service.ProtectKernelModules":    "yes",
		"Service.Restart":                 "on-failure",
		"Service.AmbientCapabilities":     "",
		"Service.NotifyAccess":            "main",
		"Service.UMask":                   "0077",
		"Service.ProtectClock":            "yes",
		"Service.ProtectHostname":         "yes",
		"Service.ProtectKernelLogs":       "yes",
		"Service.SystemCallErrorNumber":   "EPERM",
		"Service.RemoveIPC":               "yes",
		"Service.LimitNOFILE":             "4096",
		"Service.TimeoutStopSec":          "30s",
		"Service.RestartSec":              "2s",
		"Service.User":                    "pgwrt",
		"Service.ProtectProc":             "invisible",
		"Service.ProcSubset":              "pid",
		"Unit.Wants":                      "network-online.target",
		"Unit.After":                      "network-online.target",
		"Unit.Description":                "pgwrt PostgreSQL pooler and router",
	} {
		if got := svc[k]; len(got) == 0 || got[0] != want {
			t.Errorf("%s: %s = %q, want %q", service, k, got, want)
		}
	}
	sock := unitKeys(t, socket)
	for k, want := range map[string]string{
		"Socket.ListenStream": "5432",
		"Socket.Service":      "pgwrt.service",
		"Install.WantedBy":    "sockets.target",
	} {
		if got := sock[k]; len(got) == 0 || got[0] != want {
			t.Errorf("%s: %s = %q, want %q", socket, k, got, want)
		}
	}

	// systemd's own check, where systemd is installed. It cannot find
	// /usr/sbin/pgwrt on a build machine; everything else must pass.
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze not installed: skipping systemd-analyze verify")
		return
	}
	dir := t.TempDir()
	for _, f := range []string{service, socket} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("systemd-analyze", "verify", "--man=no", "./pgwrt.socket", "./pgwrt.service")
	cmd.Dir = dir
	out, _ := cmd.CombinedOutput()
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l == "" || strings.Contains(l, "/usr/sbin/pgwrt is not executable") {
			continue
		}
		t.Errorf("systemd-analyze verify: %s", l)
	}
}
