package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func startup(code uint32, kv ...string) []byte {
	b := []byte{0, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, code)
	for _, s := range kv {
		b = append(append(b, s...), 0)
	}
	if code == ProtocolVersion3 {
		b = append(b, 0)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

func TestReadStartup(t *testing.T) {
	cancel := AppendCancel(nil, 42, 7)
	for _, tc := range []struct {
		name string
		in   []byte
		err  bool
		code uint32
		keys []string
	}{
		{"startup", startup(ProtocolVersion3, "user", "app", "database", "db", "application_name", "x"), false, ProtocolVersion3, []string{"user", "database", "application_name"}},
		{"ssl", startup(CodeSSL), false, CodeSSL, nil},
		{"gssenc", startup(CodeGSSENC), false, CodeGSSENC, nil},
		{"cancel", cancel, false, CodeCancel, nil},
		{"short length", []byte{0, 0, 0, 4}, true, 0, nil},
		{"huge length", []byte{0x7f, 0, 0, 0, 0, 3, 0, 0}, true, 0, nil},
		{"version 2", startup(2 << 16), true, 0, nil},
		{"no user", startup(ProtocolVersion3, "database", "db"), true, 0, nil},
		{"ssl with body", append(startup(CodeSSL)[:4:4], 0, 0, 0, 0), true, 0, nil},
		{"cancel too short", startup(CodeCancel), true, 0, nil},
		{"unterminated", func() []byte { b := startup(ProtocolVersion3, "user", "app"); return b[:len(b)-2] }(), true, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ReadStartup(bytes.NewReader(tc.in))
			if tc.err {
				if err == nil {
					t.Fatalf("accepted: %+v", s)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Code != tc.code {
				t.Fatalf("code %d", s.Code)
			}
			if tc.keys != nil && (len(s.Keys) != len(tc.keys) || s.Params["user"] != "app") {
				t.Fatalf("keys %v params %v", s.Keys, s.Params)
			}
			if tc.code == CodeCancel && (s.PID != 42 || s.Secret != 7) {
				t.Fatalf("cancel %d %d", s.PID, s.Secret)
			}
		})
	}
}

func TestStartupRoundTrip(t *testing.T) {
	keys := []string{"user", "database", "options"}
	params := map[string]string{"user": "u", "database": "d", "options": "-c search_path=x"}
	s, err := ReadStartup(bytes.NewReader(AppendStartup(nil, keys, params)))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if s.Params[k] != params[k] {
			t.Fatalf("%s = %q", k, s.Params[k])
		}
	}
}

func TestErrorRoundTrip(t *testing.T) {
	e := &Error{Severity: "FATAL", Code: "57P01", Message: "bye", Detail: "d", Hint: "h"}
	b := AppendError(nil, e)
	rd := Reader{R: bytes.NewReader(b)}
	m, err := rd.Read()
	if err != nil || m.Type != 'E' {
		t.Fatal(m.Type, err)
	}
	if got := ParseError(m.Body); *got != *e {
		t.Fatalf("got %+v", got)
	}
}

func TestReaderRefusesOversize(t *testing.T) {
	b := []byte{'D', 0x7f, 0xff, 0xff, 0xff}
	rd := Reader{R: bytes.NewReader(b), Max: 1024}
	if _, err := rd.Read(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("err %v", err)
	}
}

// TestReaderResumesAfterDeadline cuts a stream of messages at every byte
// with a read deadline, as the monitor's poke does to its wait between
// checks: each Read cut short must leave the Reader where it was, so the
// messages come out whole and in step. Before the Reader kept its place, a
// poke between a NoticeResponse's header and body made the next check read
// the body ("S" for severity, then "WARN") as a header.
func TestReaderResumesAfterDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	w, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	notice := AppendError(nil, &Error{Severity: "WARNING", Code: "01000", Message: strings.Repeat("x", 300)})
	notice[0] = 'N'
	stream := append(append([]byte{}, notice...), 'Z', 0, 0, 0, 5, 'I')
	rd := Reader{R: c, Max: 1024}
	for cut := 0; cut <= len(stream); cut++ {
		if _, err := w.Write(stream[:cut]); err != nil {
			t.Fatal(err)
		}
		var got []Msg
		// Read what the first part holds until the deadline cuts in.
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		for {
			m, err := rd.Read()
			if err != nil {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("cut %d: %v", cut, err)
				}
				break
			}
			got = append(got, Msg{Type: m.Type, Body: append([]byte(nil), m.Body...)})
		}
		if _, err := w.Write(stream[cut:]); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for len(got) < 2 {
			m, err := rd.Read()
			if err != nil {
				t.Fatalf("cut %d: after the deadline: %v", cut, err)
			}
			got = append(got, Msg{Type: m.Type, Body: append([]byte(nil), m.Body...)})
		}
		if got[0].Type != 'N' || !bytes.Equal(got[0].Body, notice[5:]) || got[1].Type != 'Z' || string(got[1].Body) != "I" {
			t.Fatalf("cut %d: messages out of step: %q %q", cut, got[0].Type, got[1].Type)
		}
	}
}

func FuzzReadStartup(f *testing.F) {
	f.Add(startup(ProtocolVersion3, "user", "app"))
	f.Add(startup(CodeSSL))
	f.Add(AppendCancel(nil, 1, 2))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ReadStartup(bytes.NewReader(b))
		if err == nil && s.Code == ProtocolVersion3 && s.Params["user"] == "" {
			t.Fatal("accepted a startup packet without a user")
		}
	})
}
