package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/http2"
)

// phalanxSystem drives phalanx's client API over HTTP/2 without TLS (h2c with prior knowledge,
// as phalanx serves it without TLS_CERT), values as raw bytes both ways: PUT /v1/kv/<key> with
// the value as an application/octet-stream body, GET /v1/kv/<key>?raw answering the bare value.
// One http2.Transport (one connection) per member and connection slot, like the etcd side.
type phalanxSystem struct {
	eps        []string
	transports [][]*http2.Transport // [member][conn]
	keys       []string
	value      []byte
	token      string
	timeout    time.Duration
}

func newPhalanx(eps []string, cfg config, value []byte, token string) *phalanxSystem {
	s := &phalanxSystem{eps: eps, value: value, token: token, timeout: cfg.timeout}
	for range eps {
		var row []*http2.Transport
		for c := 0; c < cfg.conns; c++ {
			row = append(row, &http2.Transport{
				AllowHTTP:          true,
				DisableCompression: true,
				// h2c: the "TLS" dial of an http:// URL is a plain TCP connection.
				DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, network, addr)
				},
			})
		}
		s.transports = append(s.transports, row)
	}
	s.keys = make([]string, cfg.keys)
	for k := range s.keys {
		s.keys[k] = keyName(k)
	}
	return s
}

func (s *phalanxSystem) name() string        { return "phalanx" }
func (s *phalanxSystem) endpoints() []string { return s.eps }

// request is the one place that builds a request to phalanx: every header the API needs
// (credentials included) is set here.
func (s *phalanxSystem) request(ctx context.Context, method, ep, pathAndQuery string, body []byte) *http.Request {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+ep+pathAndQuery, rd)
	if err != nil {
		panic(err) // the URL is ours
	}
	if body != nil {
		req.Header.Set("content-type", "application/octet-stream")
	}
	if s.token != "" {
		req.Header.Set("authorization", "Bearer "+s.token)
	}
	return req
}

// roundTrip sends req on transport tr and returns the status and the whole body.
func roundTrip(tr *http2.Transport, req *http.Request) (int, []byte, error) {
	res, err := tr.RoundTrip(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

// findLeader asks each node for its status; the leader is the node whose role is leader.
func (s *phalanxSystem) findLeader() (int, error) {
	var last error = fmt.Errorf("no node answered")
	for i, ep := range s.eps {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		status, body, err := roundTrip(s.transports[i][0], s.request(ctx, "GET", ep, "/v1/status", nil))
		cancel()
		if err != nil || status != 200 {
			last = fmt.Errorf("%s: status %d %v", ep, status, err)
			continue
		}
		var st struct {
			Role string `json:"role"`
		}
		if err := json.Unmarshal(body, &st); err != nil {
			last = err
			continue
		}
		if st.Role == "leader" {
			return i, nil
		}
	}
	return 0, last
}

func (s *phalanxSystem) do(ep, conn int, op opKind, k int) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	path := "/v1/kv/" + s.keys[k]
	var req *http.Request
	switch op {
	case opPut:
		req = s.request(ctx, "PUT", s.eps[ep], path, s.value)
	case opGetLinearizable:
		req = s.request(ctx, "GET", s.eps[ep], path+"?raw", nil)
	case opGetStale:
		req = s.request(ctx, "GET", s.eps[ep], path+"?raw&consistency=stale", nil)
	default:
		panic("unknown op")
	}
	status, body, err := roundTrip(s.transports[ep][conn], req)
	if err != nil {
		return err
	}
	if status != 200 {
		return fmt.Errorf("HTTP %d: %.200s", status, body)
	}
	if op != opPut && len(body) != len(s.value) {
		return fmt.Errorf("get %s: %d bytes, want %d", s.keys[k], len(body), len(s.value))
	}
	return nil
}

func (s *phalanxSystem) close() {
	for _, row := range s.transports {
		for _, t := range row {
			t.CloseIdleConnections()
		}
	}
}
