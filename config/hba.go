package config

import (
	"fmt"
	"net/netip"
)

// EffectiveHBA returns the rules pgwrt applies: the configured ones, or,
// when there are none, trust for connections from the loopback addresses
// 127.0.0.1 and ::1 and password for everyone else.
func (c *Config) EffectiveHBA() []HBARule {
	if len(c.HBA) > 0 {
		return c.HBA
	}
	return []HBARule{
		{Database: "all", User: "all", Address: "127.0.0.1/32", Method: "trust"},
		{Database: "all", User: "all", Address: "::1/128", Method: "trust"},
		{Database: "all", User: "all", Address: "all", Method: "password"},
	}
}

// Matches reports whether the rule applies to a client asking for database
// as user from addr. An IPv4 client seen as an IPv4-mapped IPv6 address
// (::ffff:a.b.c.d) is matched as IPv4. A rule whose address does not parse
// (Validate refuses those) matches nothing.
func (r HBARule) Matches(database, user string, addr netip.Addr) bool {
	if r.Database != "all" && r.Database != database {
		return false
	}
	if r.User != "all" && r.User != user {
		return false
	}
	p, err := parseHBAAddress(r.Address)
	if err != nil {
		return false
	}
	return !p.IsValid() || p.Contains(addr.Unmap().WithZone(""))
}

// parseHBAAddress reads "all" (the zero Prefix), a CIDR such as
// "192.168.1.0/24" (host bits are ignored, as in pg_hba.conf) or a bare IP,
// which means that one address.
func parseHBAAddress(s string) (netip.Prefix, error) {
	if s == "all" {
		return netip.Prefix{}, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	if s == "" {
		return netip.Prefix{}, fmt.Errorf(`must be set ("all", an IP or a CIDR such as "192.168.1.0/24")`)
	}
	return netip.Prefix{}, fmt.Errorf(`bad address %s (want "all", an IP or a CIDR such as "192.168.1.0/24")`, quote(s))
}
