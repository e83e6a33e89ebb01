package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
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
