//go:build wsloop_stdflate

package codec

// stdFlate: built with -tags wsloop_stdflate (compress/flate's DEFLATE).
const stdFlate = true
