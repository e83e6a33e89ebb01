package config

import "errors"

// LoadUCI will read the OpenWrt form of the same configuration,
// /etc/config/pgwrt, with the uci package's parser:
//
//	config pgwrt 'main'          # the top-level options, same names
//		option listen '0.0.0.0:5432'
//	config backend 'pg1'         # name = section name when named, else host:port
//		option host '192.168.1.11'
//		option port '5432'
//	config hba                   # database, user, address, method
//	config user                  # name, password
//
// on top of Default(), with the same Validate and errors at the uci
// option's line. Until the uci package lands it only says so.
func LoadUCI(path string) (*Config, error) {
	return nil, errors.New("config: reading UCI files is not implemented yet; use a TOML file")
}
