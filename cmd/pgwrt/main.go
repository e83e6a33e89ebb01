package main
import (
 _ "github.com/jackc/pgproto3/v2"
 _ "github.com/BurntSushi/toml"
 _ "github.com/coreos/go-systemd/v22/daemon"
 _ "github.com/VictoriaMetrics/metrics"
 _ "golang.org/x/sys/unix"
)
func main(){}
