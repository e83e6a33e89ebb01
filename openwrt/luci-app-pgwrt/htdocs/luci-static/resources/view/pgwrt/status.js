'use strict';
'require view';
'require dom';
'require poll';
'require rpc';

// Services -> pgwrt -> Status: the primary, the client slots and every
// node with its role, as the daemon reports them on /status. The browser
// never talks to the daemon: it calls rpcd's "pgwrt" object (the exec
// plugin /usr/libexec/rpcd/pgwrt, which runs "pgwrt status --json"), so
// LuCI's login and ACLs (acl.d/luci-app-pgwrt.json) apply.

var callStatus = rpc.declare({
	object: 'pgwrt',
	method: 'status',
	expect: { '': {} }
});

// lag is replication_lag_bytes: -1 when unknown (a primary, a node down).
function lag(bytes) {
	if (bytes == null || bytes < 0)
		return '-';
	var units = [ 'B', 'KiB', 'MiB', 'GiB', 'TiB' ], i = 0;
	while (bytes >= 1024 && i < units.length - 1) {
		bytes /= 1024;
		i++;
	}
	return (i ? bytes.toFixed(1) : bytes) + ' ' + units[i];
}

// since is how long ago an RFC 3339 time was; Go's zero time is "never".
function since(when) {
	var t = when ? Date.parse(when) : NaN;
	if (isNaN(t) || t <= 0)
		return '-';
	return _('%t ago').format(Math.max(0, Math.round((Date.now() - t) / 1000)));
}

function address(n) {
	var host = String(n.host || '');
	return (host.indexOf(':') >= 0 ? '[' + host + ']' : host) + ':' + n.port;
}

function nodeRow(st, n) {
	var role = n.role || 'unknown';
	return [
		n.name,
		address(n),
		(n.name === st.primary) ? E('strong', {}, role) : role,
		n.up ? _('yes') : E('span', { 'style': 'color:#c00' }, _('no')),
		lag(n.replication_lag_bytes),
		n.timeline > 0 ? n.timeline : '-',
		since(n.last_status_change),
		n.last_error || '-'
	];
}

function summary(st) {
	if (st.error)
		return E('div', { 'class': 'alert-message warning' }, [
			E('p', {}, _('Cannot read the status of pgwrt: %s').format(st.error)),
			E('p', {}, _('Is it running (/etc/init.d/pgwrt status), with http_listen set in /etc/config/pgwrt?'))
		]);

	var rows = [
		[ _('Primary'), st.primary ? E('strong', {}, st.primary) : E('span', { 'style': 'color:#c00' }, _('none: clients are held, then refused')) ],
		[ _('Client slots in use'), '%d / %d'.format(st.slots_in_use || 0, st.max_clients || 0) ],
		[ _('Sessions'), String(st.sessions || 0) ],
		[ _('Backend connections'), _('%d open, %d idle').format(st.backends_open || 0, st.backends_idle || 0) ],
		[ _('Topology epoch'), String(st.epoch || 0) ]
	];
	if (st.alarm)
		rows.push([ _('Alarm'), E('span', { 'style': 'color:#c00' }, st.alarm) ]);

	return E('table', { 'class': 'table' }, rows.map(function(r) {
		return E('tr', { 'class': 'tr' }, [
			E('td', { 'class': 'td left', 'width': '33%' }, r[0]),
			E('td', { 'class': 'td left' }, r[1])
		]);
	}));
}

return view.extend({
	load: function() {
		return callStatus();
	},

	render: function(st) {
		var head = E('div', { 'class': 'cbi-section' });
		var nodes = E('table', { 'class': 'table' }, [
			E('tr', { 'class': 'tr table-titles' }, [
				E('th', { 'class': 'th' }, _('Node')),
				E('th', { 'class': 'th' }, _('Address')),
				E('th', { 'class': 'th' }, _('Role')),
				E('th', { 'class': 'th' }, _('Up')),
				E('th', { 'class': 'th' }, _('Replication lag')),
				E('th', { 'class': 'th' }, _('Timeline')),
				E('th', { 'class': 'th' }, _('Last change')),
				E('th', { 'class': 'th' }, _('Last error'))
			])
		]);

		var update = function(st) {
			st = st || {};
			dom.content(head, summary(st));
			cbi_update_table(nodes, (st.nodes || []).map(function(n) { return nodeRow(st, n) }),
				E('em', {}, st.error ? _('No data') : _('No backends configured')));
		};

		update(st);
		poll.add(function() {
			return callStatus().then(update);
		}, 5);

		return E([], [
			E('h2', {}, _('pgwrt')),
			E('div', { 'class': 'cbi-map-descr' },
				_('PostgreSQL pooler and router: it finds the primary of the cluster itself and sends clients there.')),
			head,
			E('h3', {}, _('Nodes')),
			nodes
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
