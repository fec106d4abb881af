package chatroom

import (
	_ "embed"
	"encoding/json"
	"reflect"
	"time"

	"github.com/wsloop/wsloop/engine"
)

// Dashboard is the live dashboard's page, served at /dashboard: small
// charts of the server's figures, drawn every second from /stats.json, for
// an operator watching a load test. It loads nothing from elsewhere.
//
//go:embed dashboard.html
var Dashboard []byte

// statsSnapshot is what /stats.json returns: every figure of engine.Stats,
// found by reflection, so that fields added to Stats later show on the
// dashboard without a change here.
type statsSnapshot struct {
	TimeMs  int64       `json:"time_ms"`  // the server's clock (Unix ms): the page divides by its steps for rates
	Loops   int         `json:"loops"`    // event loops
	Fields  []statField `json:"fields"`   // in Stats' order; a nested struct's fields as "Outer.Inner"
	PerLoop []loopField `json:"per_loop"` // slice fields: one value per event loop (ConnsPerLoop)
}

// statField is one figure. Kind "counter" (an unsigned integer: it only
// grows, the page shows it per second) or "gauge" (a signed integer, or a
// boolean as 0 or 1: a level now).
type statField struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	Value any    `json:"value"`
}

// loopField is a figure per event loop.
type loopField struct {
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Values []any  `json:"values"`
}

// dashboardRoute answers /dashboard and /stats.json for the chat's
// plain-HTTP handler; ok is false for any other path. A room may
// therefore not be named "dashboard".
func dashboardRoute(srv *engine.Server, path string) (resp engine.HTTPResponse, ok bool) {
	switch path {
	case "/dashboard":
		return engine.HTTPResponse{Header: []engine.HeaderField{
			{Name: "Content-Type", Value: "text/html; charset=utf-8"},
			{Name: "Cache-Control", Value: "no-cache"},
		}, Body: Dashboard}, true
	case "/stats.json":
		b, _ := json.Marshal(snapshot(srv.Stats(), time.Now()))
		return engine.HTTPResponse{Header: []engine.HeaderField{
			{Name: "Content-Type", Value: "application/json"},
			{Name: "Cache-Control", Value: "no-store"},
		}, Body: b}, true
	}
	return engine.HTTPResponse{}, false
}

// snapshot flattens st by reflection.
func snapshot(st engine.Stats, now time.Time) statsSnapshot {
	s := statsSnapshot{TimeMs: now.UnixMilli(), Fields: []statField{}, PerLoop: []loopField{}}
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, fv := prefix+f.Name, v.Field(i)
			switch fv.Kind() {
			case reflect.Struct:
				walk(fv, name+".")
			case reflect.Slice, reflect.Array:
				kind, _, ok := figure(reflect.Zero(fv.Type().Elem()))
				if !ok {
					continue
				}
				lf := loopField{Name: name, Kind: kind, Values: []any{}}
				for j := range fv.Len() {
					_, val, _ := figure(fv.Index(j))
					lf.Values = append(lf.Values, val)
				}
				s.PerLoop = append(s.PerLoop, lf)
				s.Loops = max(s.Loops, len(lf.Values))
			default:
				if kind, val, ok := figure(fv); ok {
					s.Fields = append(s.Fields, statField{Name: name, Kind: kind, Value: val})
				}
			}
		}
	}
	walk(reflect.ValueOf(st), "")
	return s
}

// figure reads a number or a boolean; ok is false for anything else.
func figure(v reflect.Value) (kind string, val any, ok bool) {
	switch v.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "counter", v.Uint(), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "gauge", v.Int(), true
	case reflect.Float32, reflect.Float64:
		return "gauge", v.Float(), true
	case reflect.Bool:
		if v.Bool() {
			return "gauge", 1, true
		}
		return "gauge", 0, true
	}
	return "", nil, false
}
