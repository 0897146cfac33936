// Package web serves rtgate's built-in pages from the binary: the stream
// list (/), a WHEP player (/watch/{stream}) and a WHIP publisher of the
// browser's camera and microphone (/publish/{stream}). They are plain HTML
// and JavaScript modules embedded with go:embed: no build step, no external
// scripts, styles or fonts, so they work on a machine without internet.
//
// The pages only talk to the daemon's own endpoints, on the same origin:
// GET /api/streams, POST/PATCH/DELETE /whip/{stream} and /whep/{stream} and
// the resource URLs those return. This package knows nothing of them beyond
// their URLs; it serves files.
package web

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

//go:embed static
var files embed.FS

// static is the static/ directory of files, as served under /static/.
var static = must(fs.Sub(files, "static"))

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// pages maps the ServeMux patterns of the pages to their files.
var pages = []struct{ pattern, file string }{
	{"GET /{$}", "index.html"},
	{"GET /watch/{stream}", "watch.html"},
	{"GET /publish/{stream}", "publish.html"},
}

// assets is the pattern of the pages' scripts and style sheet.
const assets = "GET /static/"

// Register registers Handler on mux for the pages' paths, and only them:
//
//	GET /                    the streams with state, codecs, bitrate and
//	                         viewers, refreshed each second (GET /api/streams)
//	GET /watch/{stream}      plays {stream} over WHEP
//	                         (?token=T, ?offer=server, ?trickle=1)
//	GET /publish/{stream}    publishes the camera and microphone to {stream}
//	                         over WHIP (?token=T, ?video=vp8|h264|vp9|av1)
//	GET /static/             the pages' scripts and style sheet
func Register(mux *http.ServeMux) {
	h := Handler()
	for _, p := range pages {
		mux.Handle(p.pattern, h)
	}
	mux.Handle(assets, h)
}

// Handler serves the pages at the paths Register lists and 404 elsewhere.
// The pages are the same for every stream: they read the stream name and
// their options from their own URL, so nothing of the request is ever
// written into them.
func Handler() http.Handler {
	mux := http.NewServeMux()
	for _, p := range pages {
		mux.Handle(p.pattern, page(p.file))
	}
	mux.Handle(assets, http.StripPrefix("/static/", noListing(http.FileServerFS(static))))
	return secureHeaders(mux)
}

// page serves one HTML file of static/. Not http.ServeFileFS: it redirects
// any request path ending in /index.html, and a stream may be called that.
func page(name string) http.Handler {
	body := must(fs.ReadFile(static, name))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(body))
	})
}

// noListing answers 404 for directories, which http.FileServer would list.
func noListing(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// csp allows the pages nothing but their own origin: their scripts are
// files under /static/ (no inline script), and they fetch only the daemon's
// API. WebRTC media is not subject to it.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"media-src 'self' blob: mediastream:; connect-src 'self'; object-src 'none'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// secureHeaders sets the headers every page and file carries. no-cache
// makes a browser revalidate, so a new binary's pages are seen at once;
// no-referrer keeps a ?token= in the page's URL out of Referer headers.
func secureHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}
