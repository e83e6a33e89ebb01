// Package uci reads and writes OpenWrt UCI config files (/etc/config/*) the
// way libuci does, and knows nothing about what they configure.
//
// # Syntax
//
// A file is a list of statements, one or more a line:
//
//	package <name>                 (ignored, as libuci ignores it in a config file)
//	config <type> [<name>]         starts a section; without a name it is anonymous
//	option <name> [<value>]        sets an option of the current section
//	list <name> <value>            appends to a list option
//
// The commands may be shortened to p, c, o and l. Names of sections and
// options are [A-Za-z0-9_]+, package names also allow '-', and a type is any
// printable ASCII without blanks. An argument is made of pieces written side
// by side: bare text (ending at a blank or ';'; '\x' stands for x, and a '\'
// ending the line joins the next line on), '…' (taken as it is, newlines
// included) and "…" ('\x' stands for x; newlines are kept, a '\' before one
// joins the lines). So 'a'"b"c is abc. Outside quotes, '#' starts a comment
// that runs to the end of the line, even in the middle of a word, and ';'
// ends a statement.
//
// Meaning follows libuci: a named section given again continues the first
// one (another type is an error); an option given again is replaced where it
// stands; a list given after an option of the same name turns it into a list
// that starts with the option's value, and an option after a list replaces
// the list; an option set to the empty string changes nothing at all, while
// a list item may be empty. Anonymous sections get libuci's generated names (cfg01e63d…, see
// AnonymousName) and are found with File.Lookup as "@type[i]" too.
//
// # Strictness and libuci's quirks
//
// Parse is as strict as libuci's default (what `uci` and LuCI use, not the
// `-S` of the shell helpers): a bad name, an extra argument, an unknown
// command, an unterminated quote or an option before any section is an
// *Error that says "file:line: what". Beyond libuci, control characters other
// than tab, CR and LF are refused in values (as `uci set` refuses them), and
// so are NUL bytes.
//
// Where libuci's in-place parser gives odd results, Parse gives the same, so
// that a file means the same to pgwrt as to uci and LuCI: a ';' right after a
// bare argument (`option a b;option c d`) silently ends the line; a ';' in
// place of an argument ends the statement but the next argument then counts
// as an extra one (`option a ; option b c` is an error); a ';' after a quoted
// argument at the end of a line (`option a 'b';`) is an error; a line joined
// by '\' and starting with a blank starts a new argument. These cases were
// checked against libuci itself.
//
// # Writing
//
// Write produces exactly what `uci commit` writes (comments and layout are
// lost), and WriteFile replaces a file the way `uci commit` does: under the
// same flock, through a temporary file, fsync and rename, keeping the mode.
// Everything Parse accepts writes back and parses to the same sections,
// options and values; the fuzz test holds it to that.
package uci
