package scram

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

// The server side of one exchange, written from RFC 5802 so the client can be
// checked against it.
func TestExchange(t *testing.T) {
	for _, cache := range []*Cache{nil, NewCache(2)} {
		pw := "pencil"
		salt := []byte("0123456789abcdef")
		c := NewClient(pw, cache)
		first := string(c.First())
		if !strings.HasPrefix(first, "n,,n=,r=") {
			t.Fatalf("client-first %q", first)
		}
		cnonce := strings.TrimPrefix(first, "n,,n=,r=")
		sf := "r=" + cnonce + "SERVER,s=" + base64.StdEncoding.EncodeToString(salt) + ",i=4096"
		final, err := c.Final([]byte(sf))
		if err != nil {
			t.Fatal(err)
		}
		salted, _ := (*Cache)(nil).SaltedPassword(pw, salt, 4096)
		ck := mac(salted, "Client Key")
		sk := sha256.Sum256(ck)
		parts := strings.SplitN(string(final), ",p=", 2)
		auth := "n=,r=" + cnonce + "," + sf + "," + parts[0]
		sig := mac(sk[:], auth)
		proof, _ := base64.StdEncoding.DecodeString(parts[1])
		for i := range proof {
			proof[i] ^= sig[i]
		}
		if got := sha256.Sum256(proof); got != sk {
			t.Fatal("client proof does not verify")
		}
		ssig := mac(mac(salted, "Server Key"), auth)
		if err := c.Verify([]byte("v=" + base64.StdEncoding.EncodeToString(ssig))); err != nil {
			t.Fatal(err)
		}
		if err := c.Verify([]byte("v=AAAA")); err == nil {
			t.Fatal("bad server signature accepted")
		}
	}
}

func TestFinalRejects(t *testing.T) {
	c := NewClient("x", nil)
	c.First()
	for _, sf := range []string{
		"r=othernonce,s=AAAA,i=4096",
		"r=" + c.nonce + ",s=AAAA,i=4096",       // nonce not extended
		"r=" + c.nonce + "x,s=!!,i=4096",        // bad salt
		"r=" + c.nonce + "x,s=AAAA,i=0",         // bad count
		"r=" + c.nonce + "x,s=AAAA,i=999999999", // absurd count
	} {
		if _, err := c.Final([]byte(sf)); err == nil {
			t.Errorf("accepted %q", sf)
		}
	}
}

func mac(k []byte, m string) []byte {
	h := hmac.New(sha256.New, k)
	h.Write([]byte(m))
	return h.Sum(nil)
}

func BenchmarkCachedSalt(b *testing.B) {
	c := NewCache(16)
	salt := []byte("saltsaltsaltsalt")
	for b.Loop() {
		c.SaltedPassword("pw", salt, 4096)
	}
}
