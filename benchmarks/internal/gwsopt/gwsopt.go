// Package gwsopt holds the options every lxzan/gws server of the suite
// runs with (servers/gws and servers/gws-room), so that they cannot drift
// apart.
package gwsopt

import "github.com/lxzan/gws"

// Server returns gws's server options as the suite uses them: no parallel
// message handling, gws's panic recovery, and permessage-deflate as gws
// documents it for servers (no context takeover either way, level 1,
// messages under 256 bytes sent plain, as wsloop's defaults). Compression
// applies only to clients that offer it.
func Server() *gws.ServerOption {
	return &gws.ServerOption{
		ParallelEnabled: false,
		Recovery:        gws.Recovery,
		PermessageDeflate: gws.PermessageDeflate{
			Enabled:               true,
			Level:                 1,
			Threshold:             256,
			ServerContextTakeover: false,
			ClientContextTakeover: false,
		},
	}
}
