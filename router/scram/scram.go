// Package scram is the client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as
// PostgreSQL speaks it, used by pgwrt to log in to backends. The expensive
// part, PBKDF2 over the password, is cached per (password, salt, iterations):
// 4096 rounds of HMAC-SHA-256 take real time on a small MIPS core.
package scram

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// Mechanism is the only SASL mechanism pgwrt offers to backends.
const Mechanism = "SCRAM-SHA-256"

// Client is one SCRAM exchange.
type Client struct {
	password    string
	nonce       string
	clientFirst string // client-first-message-bare
	serverSig   []byte
	cache       *Cache
}

// NewClient starts an exchange. cache may be nil.
func NewClient(password string, cache *Cache) *Client {
	var b [18]byte
	rand.Read(b[:])
	return &Client{password: password, nonce: base64.StdEncoding.EncodeToString(b[:]), cache: cache}
}

// First is the client-first-message. The user name is left empty: PostgreSQL
// takes it from the startup packet.
func (c *Client) First() []byte {
	c.clientFirst = "n=,r=" + c.nonce
	return []byte("n,," + c.clientFirst)
}

// Final answers the server-first-message with the client-final-message.
func (c *Client) Final(serverFirst []byte) ([]byte, error) {
	sf := string(serverFirst)
	var nonce, salt64 string
	iter := 0
	for _, f := range strings.Split(sf, ",") {
		if len(f) < 2 || f[1] != '=' {
			continue
		}
		switch f[0] {
		case 'r':
			nonce = f[2:]
		case 's':
			salt64 = f[2:]
		case 'i':
			iter, _ = strconv.Atoi(f[2:])
		}
	}
	if !strings.HasPrefix(nonce, c.nonce) || len(nonce) == len(c.nonce) {
		return nil, errors.New("scram: server nonce does not extend ours")
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil || len(salt) == 0 {
		return nil, errors.New("scram: bad salt from server")
	}
	if iter < 1 || iter > 1<<20 {
		return nil, fmt.Errorf("scram: bad iteration count %d", iter)
	}
	salted, err := c.cache.SaltedPassword(c.password, salt, iter)
	if err != nil {
		return nil, err
	}
	clientKey := hmacSum(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	finalNoProof := "c=biws,r=" + nonce
	authMsg := c.clientFirst + "," + sf + "," + finalNoProof
	clientSig := hmacSum(storedKey[:], authMsg)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ clientSig[i]
	}
	serverKey := hmacSum(salted, "Server Key")
	c.serverSig = hmacSum(serverKey, authMsg)
	return []byte(finalNoProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// Verify checks the server-final-message, so that a server that does not know
// the password cannot pretend it does.
func (c *Client) Verify(serverFinal []byte) error {
	s := string(serverFinal)
	if strings.HasPrefix(s, "e=") {
		return fmt.Errorf("scram: server error %q", s[2:])
	}
	if !strings.HasPrefix(s, "v=") {
		return errors.New("scram: bad server-final-message")
	}
	sig, err := base64.StdEncoding.DecodeString(strings.SplitN(s[2:], ",", 2)[0])
	if err != nil || subtle.ConstantTimeCompare(sig, c.serverSig) != 1 {
		return errors.New("scram: server signature does not match")
	}
	return nil
}

func hmacSum(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// Cache keeps salted passwords so PBKDF2 runs once per (password, salt,
// iterations). Keys are a hash of those, never the password itself. A nil
// *Cache computes every time.
type Cache struct {
	mu  sync.Mutex
	max int
	m   map[[32]byte][]byte
}

// NewCache makes a cache of at most max entries.
func NewCache(max int) *Cache { return &Cache{max: max, m: make(map[[32]byte][]byte)} }

// SaltedPassword returns PBKDF2-HMAC-SHA-256(password, salt, iter).
func (c *Cache) SaltedPassword(password string, salt []byte, iter int) ([]byte, error) {
	if c == nil {
		return pbkdf2.Key(sha256.New, password, salt, iter, 32)
	}
	h := sha256.New()
	h.Write([]byte(strconv.Itoa(iter)))
	h.Write([]byte{0})
	h.Write(salt)
	h.Write([]byte{0})
	h.Write([]byte(password))
	var k [32]byte
	h.Sum(k[:0])
	c.mu.Lock()
	v, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.m) >= c.max {
		for old := range c.m { // drop an arbitrary entry
			delete(c.m, old)
			break
		}
	}
	c.m[k] = v
	c.mu.Unlock()
	return v, nil
}
