// Package shard holds the indexes wsloop's engine uses to find connections
// and to fan messages out. They import nothing of wsloop and are usable on
// their own.
//
// Use Map for anything read and written from many goroutines, such as a
// registry of connections by id or by user key: it is a map sharded by
// xxhash of the key, each shard behind its own lock, so lookups from many
// goroutines do not queue on one mutex, and unlike sync.Map it does not
// allocate on writes. Range walks it while others write.
//
// Use Rooms for room (topic) membership owned by one goroutine, such as an
// event loop: Join, Leave, LeaveAll when a member goes away, and Members,
// a dense slice that a publish walks without locks. wsloop keeps one Rooms
// per event loop, so a publish hands one task to each loop and each loop
// walks its own members. Set is a dense set with the same layout as a
// room (a slice to walk, O(1) removal), for single-owner collections
// elsewhere.
//
// Start with NewMap and NewRooms. Map is safe for concurrent use; Set and
// Rooms are not, by design.
package shard
