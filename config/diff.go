package config

import (
	"reflect"
	"slices"
	"strings"
)

// Change is what a reload from one Config to another has to do.
type Change struct {
	// BackendsAdded and BackendsRemoved are backend names (Backend.ID), in
	// config order. A backend whose name stays but whose host or port
	// changes is both removed and added: its pool must be drained.
	BackendsAdded   []string
	BackendsRemoved []string
	// ListenChanged is set when listen or freebind changed: the client
	// listener has to be reopened, which a reload does not do; the daemon
	// should say a restart is needed.
	ListenChanged bool
	// Options are the toml names of the other top-level options that
	// changed, in struct order, plus "hba" and "user" when those lists
	// changed ("listen" and "freebind" are included too). A [[user]]'s
	// pool_mode or pool_size changing is a change of "user"; pool_mode,
	// pool_size and max_prepared_statements, global or per user, apply to
	// clients that connect after the reload.
	Options []string
}

// Empty reports whether nothing changed.
func (ch Change) Empty() bool {
	return len(ch.BackendsAdded) == 0 && len(ch.BackendsRemoved) == 0 && len(ch.Options) == 0
}

// Diff compares two validated configurations. Source and line numbers do
// not count as changes.
func Diff(old, new *Config) Change {
	var ch Change

	oldB := map[string]Backend{}
	for _, b := range old.Backends {
		oldB[b.ID()] = b
	}
	newB := map[string]Backend{}
	for _, b := range new.Backends {
		newB[b.ID()] = b
	}
	for _, b := range old.Backends {
		if n, ok := newB[b.ID()]; !ok || !sameBackend(b, n) {
			ch.BackendsRemoved = append(ch.BackendsRemoved, b.ID())
		}
	}
	for _, b := range new.Backends {
		if o, ok := oldB[b.ID()]; !ok || !sameBackend(o, b) {
			ch.BackendsAdded = append(ch.BackendsAdded, b.ID())
		}
	}

	ov, nv := reflect.ValueOf(old).Elem(), reflect.ValueOf(new).Elem()
	t := ov.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" || name == "backend" || !f.IsExported() {
			continue
		}
		a, b := ov.Field(i).Interface(), nv.Field(i).Interface()
		var same bool
		switch name {
		case "hba":
			same = slices.EqualFunc(old.HBA, new.HBA, func(x, y HBARule) bool { x.Line, y.Line = 0, 0; return x == y })
		case "user":
			same = slices.EqualFunc(old.Users, new.Users, func(x, y User) bool { x.Line, y.Line = 0, 0; return x == y })
		default:
			same = reflect.DeepEqual(a, b)
		}
		if !same {
			ch.Options = append(ch.Options, name)
			if name == "listen" || name == "freebind" {
				ch.ListenChanged = true
			}
		}
	}
	return ch
}

func sameBackend(a, b Backend) bool {
	return a.Host == b.Host && a.Port == b.Port
}
