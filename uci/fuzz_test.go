package uci

import "testing"

// FuzzParse checks that Parse never panics and that whatever it accepts
// writes, parses back to the same sections and options, and writes the same
// bytes again.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"",
		"config t n\n\toption a 'x'\n\tlist l 1\n\tlist l \"2\"\n",
		"package p\nconfig t\noption a b # c\nconfig t cfg01b61d\n",
		"c t 'n'; o a 'b'; l c d\n",
		"config t n\noption a b;option c d\n",
		"config t n\noption a 'x\ny' \"z\\\nw\" \\\n",
		"config t n\r\noption a foo\\\r\nbar\r\n",
		"config t n\noption a 'it'\\''s'\n",
		"config 'a;b' n\nlist a ''\nlist a\noption a\n",
		"config t s\nconfig u s\n",
		"config t n\noption a ; option b c\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := ParseBytes("fuzz", data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is %T", err, err)
			}
			return
		}
		roundTrip(t, file)
		for _, s := range file.Sections {
			if file.Lookup(s.Name) == nil {
				t.Fatalf("Lookup(%q) = nil", s.Name)
			}
		}
	})
}
